"""Exceptions raised by t2c_captum.

Every error the library raises on bad input derives from :class:`T2CError` and says what to do next::

    T2CError
    ├── UnknownNameError          a backbone/space/aligner/vocabulary name that is not registered
    ├── DuplicateNameError        two plugins register the same name
    ├── PluginError               a plugin failed to import, misspelled a hook, or raised in one
    ├── DataError                 empty folders, unreadable images, bad CSVs, NaN/Inf features
    ├── DimensionMismatchError    features whose size does not match what a model expects
    ├── IncompatibleArtifactError a saved aligner/decoder loaded for a different backbone or space
    ├── CheckpointFormatError     a checkpoint that is not safetensors (or is corrupted)
    ├── NotFittedError            an aligner or classifier used before ``fit``
    ├── ConfigurationError        a setting out of range (a negative alpha, an unknown pool or precision)
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
    """A checkpoint that is not in a format we load safely."""


class NotFittedError(T2CError, RuntimeError):
    """An estimator used before it was fitted."""


class WorldError(T2CError, ValueError):
    """Bad concept-world settings or weights."""


class ConfigurationError(T2CError, ValueError):
    """A setting out of range or not one of its choices; the message names the accepted values."""
