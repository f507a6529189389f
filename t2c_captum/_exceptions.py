"""Exceptions raised by t2c_captum.

Every error the library raises on bad input derives from :class:`T2CError` and says what to do next::

    T2CError
    ├── UnknownNameError          a backbone/space/aligner/vocabulary name that is not registered
    ├── DuplicateNameError        two plugins register the same name
    ├── PluginError               a plugin failed to import, misspelled a hook, or raised in one
    ├── DataError                 empty folders, unreadable images, bad CSVs, NaN/Inf features
    │   └── QuerySyntaxError      a retrieval query string that does not parse (the message has a caret)
    ├── DimensionMismatchError    features whose size does not match what a model expects
    ├── IncompatibleArtifactError a saved aligner/decoder loaded for a different backbone or space
    ├── CheckpointFormatError     a checkpoint that is not safetensors, is corrupted, or cannot be fetched
    ├── NotFittedError            an aligner or classifier used before ``fit``
    ├── ConfigurationError        a setting out of range (a negative alpha, an unknown pool or precision)
    │   └── SettingsError         an extraction/fit setting that cannot be used (also a DataError)
    ├── RayClusterError           a Ray cluster that cannot be reached or started
    └── WorldError                bad concept-world settings, or missing/corrupted world weights
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointFormatError",
    "ConfigurationError",
    "DataError",
    "DimensionMismatchError",
    "DuplicateNameError",
    "IncompatibleArtifactError",
    "NotFittedError",
    "PluginError",
    "QuerySyntaxError",
    "RayClusterError",
    "SettingsError",
    "T2CError",
    "UnknownNameError",
    "WorldError",
]


class T2CError(Exception):
    """Base class of every error raised by t2c_captum."""


class UnknownNameError(T2CError, KeyError):
    """A name that no registry knows; the message suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += f" Did you mean {', '.join(repr(c) for c in close)}?"
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        msg += f" Registered {kind}s: {shown or '(none)'}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)
        self.kind, self.name, self.suggestions = kind, name, close

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DuplicateNameError(T2CError):
    """Two registrations of the same name."""


class PluginError(T2CError):
    """A plugin that cannot be loaded or that misbehaves; the message names the plugin."""


class DataError(T2CError):
    """Input data that cannot be used as given."""


class DimensionMismatchError(T2CError, ValueError):
    """Tensors whose shapes do not fit together."""


class IncompatibleArtifactError(T2CError):
    """A saved artifact that does not match the backbone or space it is loaded for."""


class CheckpointFormatError(T2CError):
    """A checkpoint or pretrained weights that cannot be loaded: not in a format we load safely,
    corrupted, or not downloadable (offline); the message says which local file to pass instead."""


class NotFittedError(T2CError, RuntimeError):
    """An estimator used before it was fitted."""


class WorldError(T2CError, ValueError):
    """Bad concept-world settings or weights."""


class ConfigurationError(T2CError, ValueError):
    """A setting out of range or not one of its choices; the message names the accepted values."""


class SettingsError(ConfigurationError, DataError):
    """An extraction or fit setting that cannot be used (a bad backend, precision or size);
    catchable as a :class:`ConfigurationError` or, as before, a :class:`DataError`."""


class RayClusterError(T2CError):
    """The Ray cluster could not be reached or started."""


class QuerySyntaxError(DataError):
    """A query string that does not parse; the message points at the position with a caret."""

    def __init__(self, query: str, position: int, expected: str, what: str = "query") -> None:
        found = repr(query[position]) if position < len(query) else f"the end of the {what}"
        msg = (
            f"cannot parse the {what}: expected {expected} at position {position}, found {found}\n"
            f"    {query}\n    {' ' * position}^\n"
            'Write quoted concepts joined by & (and), | (or), ~ (not) and parentheses, each with an '
            'optional threshold: "red">z1.5 (z-score), "red">q0.9 (quantile), "red">0.3 (cosine), '
            '"red">c0 (contrast: beats the other concepts of its group); '
            'e.g. "red" & ("circle" | "star") & ~"striped background".'
        )
        super().__init__(msg)
        self.query, self.position, self.expected = query, position, expected
