"""A small named registry: register, get, list with a glob filter.

Every kind of pluggable part (backbones, spaces, aligners, concept vocabularies, probes) lives in one
:class:`Registry`. Entries remember which plugin registered them, so ``t2c plugins`` can say who gave what.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._exceptions import ConfigurationError, DuplicateNameError, UnknownNameError

__all__ = ["Registry", "RegistryEntry"]

T = TypeVar("T")


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    """One registered part: its name, the object (usually a factory), who gave it and a summary."""

    name: str
    obj: T
    plugin: str
    description: str = ""


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind (str): what the entries are, used in messages ("backbone", "space", ...).
        hint (str, optional): appended to unknown-name errors, e.g. how to add a new entry.
            Default: ``""``
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, RegistryEntry[T]] = {}

    def register(self, name: str, obj: T, *, plugin: str = "user", description: str = "") -> None:
        """Add ``obj`` under ``name``; a name registered twice raises :class:`DuplicateNameError`."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            first = self._entries[name].plugin
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: first by plugin {first!r}, again by "
                f"plugin {plugin!r}. Rename one of them, or block one plugin with "
                f"T2C_BLOCK_PLUGINS={plugin}."
            )
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = RegistryEntry(name, obj, plugin, description)

    def unregister(self, name: str) -> None:
        """Remove ``name`` if present."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> RegistryEntry[T]:
        """The entry for ``name``; unknown names raise :class:`UnknownNameError` with suggestions."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries, self.hint) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a glob ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self) -> list[RegistryEntry[T]]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


def find_factory(registry: Registry[Any], spec: str, hub_family: str) -> tuple[Any, dict[str, Any]] | None:
    """Resolve ``spec`` to ``(factory, extra options)``: a registered name, ``FAMILY:MODEL`` where
    ``FAMILY`` is registered, or ``hf-hub:...`` (given to ``hub_family``); ``None`` if none applies."""
    if spec in registry:
        return registry.get(spec), {}
    family, sep, model = spec.partition(":")
    if spec.startswith("hf-hub:"):
        family, model = hub_family, spec
    if sep and family in registry:
        return registry.get(family), {"model": model}
    return None


def build_part(factory: Any, spec: str, options: dict[str, Any], expected: type, kind: str) -> Any:
    """Call a registered factory and check that it returned an ``expected`` instance."""
    from ._exceptions import ConfigurationError, PluginError

    try:
        part = factory(**options)
    except TypeError as exc:
        raise ConfigurationError(
            f"{kind} {spec!r} does not accept the options {sorted(options)}: {exc}"
        ) from exc
    if not isinstance(part, expected):
        raise PluginError(
            f"the {kind} factory for {spec!r} returned {type(part).__name__}, not a {expected.__name__}"
        )
    return part
