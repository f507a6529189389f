"""The plugin manager: built-in parts and third-party plugins, registered through the same hooks.

Third-party plugins are found through the ``t2c_captum`` entry-point group. Two environment variables
control loading: ``T2C_LOAD_PLUGINS`` (comma-separated entry-point names: load only these; empty string
loads none) and ``T2C_BLOCK_PLUGINS`` (comma-separated names never to load).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from ._exceptions import PluginError, T2CError
from .registry import Registry, RegistryEntry

__all__ = [
    "DEFAULT_PLUGINS",
    "HOOK_REGISTRIES",
    "Registries",
    "get_plugin_manager",
    "get_registries",
    "list_parts",
    "register_plugin",
    "temporary_plugin",
    "unregister_plugin",
]

#: Built-in plugin modules, registered exactly like third-party plugins.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "t2c_captum.backbones._plugin",
    "t2c_captum.spaces._plugin",
    "t2c_captum.aligners._plugin",
    "t2c_captum.concepts._plugin",
    "t2c_captum.world._plugin",
)

#: Which registry each registration hook fills.
HOOK_REGISTRIES: dict[str, str] = {
    "register_backbones": "backbones",
    "register_spaces": "spaces",
    "register_aligners": "aligners",
    "register_probes": "probes",
    "register_concept_vocabularies": "vocabularies",
    "register_decoders": "decoders",
    "register_sources": "sources",
    "register_caption_corpora": "corpora",
}

_ADD_HINT = "Install a plugin that provides it, or register it with a @hookimpl (see docs/plugins.md)."


@dataclass
class Registries:
    """Every registry of pluggable parts, filled from all plugins' hooks."""

    backbones: Registry[Any] = field(default_factory=lambda: Registry("backbone", _ADD_HINT))
    spaces: Registry[Any] = field(default_factory=lambda: Registry("space", _ADD_HINT))
    aligners: Registry[Any] = field(default_factory=lambda: Registry("aligner", _ADD_HINT))
    probes: Registry[Any] = field(default_factory=lambda: Registry("probe", _ADD_HINT))
    vocabularies: Registry[Any] = field(default_factory=lambda: Registry("concept vocabulary", _ADD_HINT))
    decoders: Registry[Any] = field(default_factory=lambda: Registry("decoder", _ADD_HINT))
    sources: Registry[Any] = field(default_factory=lambda: Registry("image source", _ADD_HINT))
    corpora: Registry[Any] = field(default_factory=lambda: Registry("caption corpus", _ADD_HINT))

    def all(self) -> dict[str, Registry[Any]]:
        """The registries by attribute name."""
        return {name: getattr(self, name) for name in HOOK_REGISTRIES.values()}


_manager: pluggy.PluginManager | None = None
_registries: Registries | None = None


def _env_names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} has an invalid hook implementation: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc


def _check_pending(pm: pluggy.PluginManager) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        known = ", ".join(HOOK_REGISTRIES)
        raise PluginError(
            f"plugin {plugin!r} implements a hook that does not exist ({exc}). "
            f"Known hooks: {known}. Check the spelling of the function name."
        ) from exc


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allow, block = _env_names("T2C_LOAD_PLUGINS"), _env_names("T2C_BLOCK_PLUGINS") or set()
    for ep in entry_points(group=hookspecs.PROJECT_NAME):
        if ep.name in block or (allow is not None and ep.name not in allow):
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must name itself
            raise PluginError(
                f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall it, or skip it with "
                f"T2C_BLOCK_PLUGINS={ep.name}."
            ) from exc
        _register(pm, module, ep.name)


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, except that registering or unregistering a plugin (by any route: this
    module's helpers, or ``get_plugin_manager().register(...)`` directly) makes the next registry
    lookup read every plugin's hooks again."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        _invalidate()
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        _invalidate()
        return removed


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and entry-point plugins loaded.

    Plugins registered on it at any time (``get_plugin_manager().register(MyPlugin())``) take effect
    at the next lookup; :func:`register_plugin` does the same and also checks the new hooks at once.
    """
    global _manager
    if _manager is None:
        pm = _PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        for module_name in DEFAULT_PLUGINS:
            _register(pm, importlib.import_module(module_name), module_name)
        _load_entry_points(pm)
        _check_pending(pm)
        _manager = pm
    return _manager


def _plugin_display_name(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) or repr(plugin)
    return "t2c_captum (built-in)" if name in DEFAULT_PLUGINS else name


def _fill(pm: pluggy.PluginManager, hook_name: str, registry: Registry[Any]) -> None:
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order: built-ins first
        plugin_name = _plugin_display_name(pm, impl.plugin)

        def register(name: str, obj: Any, description: str = "", _plugin: str = plugin_name) -> None:
            registry.register(name, obj, plugin=_plugin, description=description)

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except T2CError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin_name!r} raised in {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc


def get_registries() -> Registries:
    """All registries, filled by calling every plugin's registration hooks (cached until a plugin
    is registered or unregistered)."""
    global _registries
    if _registries is None:
        pm = get_plugin_manager()
        _check_pending(pm)  # a plugin registered on the manager directly is checked here
        regs = Registries()
        for hook_name, attr in HOOK_REGISTRIES.items():
            _fill(pm, hook_name, getattr(regs, attr))
        _registries = regs
    return _registries


def _invalidate() -> None:
    global _registries
    _registries = None


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time (e.g. in a test); returns its name."""
    pm = get_plugin_manager()
    name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
    _register(pm, plugin, name)
    try:
        _check_pending(pm)
        _invalidate()
        get_registries()
    except T2CError:
        pm.unregister(name=name)
        _invalidate()
        raise
    return name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    pm = get_plugin_manager()
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    _invalidate()


@contextmanager
def temporary_plugin(plugin: object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block."""
    registered = register_plugin(plugin, name)
    try:
        yield registered
    finally:
        unregister_plugin(registered)


def list_parts() -> list[tuple[str, RegistryEntry[Any]]]:
    """Every registered part as ``(kind, entry)`` pairs, for ``t2c plugins``."""
    regs = get_registries()
    return [(kind, entry) for kind, reg in regs.all().items() for entry in reg.entries()]


def _reset_for_tests() -> None:
    """Forget the manager and registries (the next call rebuilds them)."""
    global _manager, _registries
    _manager, _registries = None, None
