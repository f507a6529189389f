from __future__ import annotations

import importlib.metadata
import types

import pytest

from t2c_captum import DuplicateNameError, PluginError, UnknownNameError, hookimpl, hookspecs
from t2c_captum.plugins import (
    HOOK_REGISTRIES,
    get_registries,
    list_parts,
    temporary_plugin,
)
from t2c_captum.registry import Registry
from t2c_captum.testing import FakeBackbone


def test_builtins_are_registered_through_the_hooks():
    regs = get_registries()
    assert {"timm", "torchvision", "world-cnn", "world-ae"} <= set(regs.backbones)
    assert {"open_clip", "world-clip"} <= set(regs.spaces)
    assert {"linear", "sgd"} <= set(regs.aligners)
    assert regs.backbones.entry("timm").plugin == "t2c_captum (built-in)"
    kinds = {kind for kind, _ in list_parts()}
    assert {"backbones", "spaces", "aligners", "vocabularies"} <= kinds


def test_a_plugin_adds_a_backbone_and_is_named():
    class MyPlugin:
        @hookimpl
        def register_backbones(self, register):
            register("my-net", lambda **kw: FakeBackbone(name="my-net"), description="mine")

    from t2c_captum import load_backbone

    with temporary_plugin(MyPlugin(), "my-plugin"):
        assert load_backbone("my-net").name == "my-net"
        assert get_registries().backbones.entry("my-net").plugin == "my-plugin"
    assert "my-net" not in get_registries().backbones


def test_misspelled_hook_names_the_plugin():
    class Typo:
        @hookimpl
        def register_backbone(self, register):  # missing "s"
            pass

    with (
        pytest.raises(PluginError, match=r"'typo-plugin'.*does not exist"),
        temporary_plugin(Typo(), "typo-plugin"),
    ):
        pass
    assert "typo-plugin" not in str(get_registries())


def test_duplicate_names_name_both_plugins():
    class Dup:
        @hookimpl
        def register_spaces(self, register):
            register("world-clip", lambda **kw: None)

    with (
        pytest.raises(DuplicateNameError, match=r"built-in.*'dup-plugin'"),
        temporary_plugin(Dup(), "dup-plugin"),
    ):
        pass
    assert "world-clip" in get_registries().spaces  # the built-in survives


def test_plugin_raising_in_a_hook_is_named():
    class Broken:
        @hookimpl
        def register_aligners(self, register):
            raise RuntimeError("boom")

    with (
        pytest.raises(PluginError, match=r"'broken-plugin' raised in register_aligners.*boom"),
        temporary_plugin(Broken(), "broken-plugin"),
    ):
        pass


def test_plugin_failing_on_import_is_named(monkeypatch):
    from t2c_captum import plugins

    ep = importlib.metadata.EntryPoint("badplug", "no_such_module_xyz", hookspecs.PROJECT_NAME)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep])
    monkeypatch.setattr(plugins, "_manager", None)
    monkeypatch.setattr(plugins, "_registries", None)
    with pytest.raises(PluginError, match=r"'badplug'.*failed to import.*T2C_BLOCK_PLUGINS=badplug"):
        plugins.get_plugin_manager()
    monkeypatch.setenv("T2C_BLOCK_PLUGINS", "badplug")
    plugins.get_plugin_manager()  # blocked: loads fine
    monkeypatch.setattr(plugins, "_manager", None)
    monkeypatch.setattr(plugins, "_registries", None)


def test_entry_point_plugins_load(monkeypatch):
    from t2c_captum import plugins

    module = types.ModuleType("fake_ep_plugin")

    @hookimpl
    def register_concept_vocabularies(register):
        register("ep-words", lambda: ["a", "b"])

    module.register_concept_vocabularies = register_concept_vocabularies
    ep = importlib.metadata.EntryPoint("fakeep", "fake_ep_plugin", hookspecs.PROJECT_NAME)
    monkeypatch.setattr(ep.__class__, "load", lambda self: module)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep])
    monkeypatch.setattr(plugins, "_manager", None)
    monkeypatch.setattr(plugins, "_registries", None)
    try:
        entry = plugins.get_registries().vocabularies.entry("ep-words")
        assert entry.plugin == "fakeep" and entry.obj() == ["a", "b"]
    finally:
        plugins._reset_for_tests()


def test_every_hook_is_documented_and_mapped():
    specs = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert set(specs) == set(HOOK_REGISTRIES)
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert doc and ":param register:" in doc and "versionadded" in doc


def test_registry_errors():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1, plugin="p1")
    with pytest.raises(DuplicateNameError, match="'p1'.*'p2'"):
        reg.register("alpha", 2, plugin="p2")
    with pytest.raises(UnknownNameError, match="Did you mean 'alpha'"):
        reg.get("alpah")
    assert reg.names("al*") == ["alpha"] and len(reg) == 1


def test_a_plugin_registered_on_the_manager_after_a_lookup_is_seen_by_the_next_one():
    from t2c_captum import load_backbone
    from t2c_captum.plugins import get_plugin_manager

    class Late:
        @hookimpl
        def register_backbones(self, register):
            register("late-net", lambda **kw: FakeBackbone(name="late-net"))

    assert "timm" in get_registries().backbones  # the registries have been read
    pm = get_plugin_manager()
    plugin = Late()
    pm.register(plugin, name="late")  # straight on pluggy's manager, as a user might
    try:
        assert load_backbone("late-net").name == "late-net"
        assert get_registries().backbones.entry("late-net").plugin == "late"
    finally:
        pm.unregister(plugin)
    with pytest.raises(UnknownNameError):
        load_backbone("late-net")


def test_a_misspelled_hook_registered_on_the_manager_fails_the_next_lookup_by_name():
    from t2c_captum.plugins import get_plugin_manager

    class Misspelled:
        @hookimpl
        def register_backbone(self, register):  # no such hook
            pass

    pm = get_plugin_manager()
    plugin = Misspelled()
    pm.register(plugin, name="typo-plugin")
    try:
        with pytest.raises(PluginError, match="typo-plugin.*register_backbone"):
            get_registries()
    finally:
        pm.unregister(plugin)
    assert "timm" in get_registries().backbones
