"""Plugin discovery and registration: entry points, allow/block lists, faulty plugins, dispatch."""

from __future__ import annotations

import logging
import re
import sys
import types
from importlib import metadata

import pytest

from mmcore import EmbeddingsInput, PluginError, PrefillContext, TokensInput, UnsupportedInputError, hookimpl
from mmcore.hookspecs import hookspec
from mmcore.plugins import PluginManager


class Clip:
    """A fake media input."""


class ShortClip(Clip):
    pass


class ClipHandler:
    name = "clip"
    input_types = (Clip,)

    def preprocess(self, item, ctx: PrefillContext):
        return item

    def prefill(self, prepared, ctx: PrefillContext):
        return TokensInput([1])


def plugin_module(name: str, handler=None, fail: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def mmcore_register_modalities(registry):
        if fail:
            raise RuntimeError("boom during registration")
        registry.add(handler or ClipHandler())

    module.mmcore_register_modalities = mmcore_register_modalities  # type: ignore[attr-defined]
    return module


def test_dispatch_is_by_type_with_base_class_fallback():
    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("clips"))
    registry = pm.modality_registry()
    assert registry.handler_for(Clip()).name == "clip"
    assert registry.handler_for(ShortClip()).name == "clip"
    with pytest.raises(UnsupportedInputError, match="handled input types: .*Clip"):
        registry.handler_for(3.5)


def test_duplicate_input_type_names_both_plugins():
    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("first"))

    class OtherHandler(ClipHandler):
        name = "other"

    pm.register(plugin_module("second", OtherHandler()))
    registry = pm.modality_registry()
    # pluggy calls the later-registered plugin first, so "first" is the one that collides.
    assert [f.name for f in pm.failures] == ["first"]
    assert "second" in pm.failures[0].error and "Clip" in pm.failures[0].error
    assert registry.handler_for(Clip()).name == "other"


def test_plugin_that_raises_during_registration_is_reported_and_others_load():
    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("broken", fail=True))
    pm.register(plugin_module("good"))
    registry = pm.modality_registry()
    assert registry.handler_for(Clip()).name == "clip"
    assert [(f.name, f.stage) for f in pm.failures] == [("broken", "mmcore_register_modalities")]
    assert "boom during registration" in pm.failures[0].error


def test_core_types_cannot_be_claimed_by_plugins():
    class Greedy(ClipHandler):
        input_types = (TokensInput, EmbeddingsInput)

    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("greedy", Greedy()))
    pm.modality_registry()
    assert "core handles itself" in pm.failures[0].error


def test_misspelt_hook_fails_loudly():
    module = types.ModuleType("typo")

    @hookimpl
    def mmcore_register_modality(registry):  # missing "ies"
        pass

    module.mmcore_register_modality = mmcore_register_modality  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="typo"):
        PluginManager(entry_points=False).register(module)


class FakeDistribution(metadata.Distribution):
    """An installed distribution whose only content is an `mmcore` entry point."""

    def __init__(self, name: str, module: str) -> None:
        self._name, self._module = name, module

    def read_text(self, filename: str) -> str | None:
        if filename == "METADATA":
            return f"Metadata-Version: 2.1\nName: {self._name}\nVersion: 9.9.9\n"
        if filename == "entry_points.txt":
            return f"[mmcore]\n{self._name.removeprefix('mmcore-')} = {self._module}\n"
        return None

    def locate_file(self, path):  # pragma: no cover - not used
        return path


@pytest.fixture
def fake_installed(monkeypatch):
    """Make `importlib.metadata` see two fake plugin distributions (and nothing else)."""
    sys.modules["fake_clips"] = plugin_module("fake_clips")
    sys.modules["fake_broken"] = types.ModuleType("fake_broken")  # loads, but...
    dists = [FakeDistribution("mmcore-clips", "fake_clips"), FakeDistribution("mmcore-broken", "fake_missing_module")]
    monkeypatch.setattr(metadata, "distributions", lambda **kw: iter(dists))
    yield
    del sys.modules["fake_clips"], sys.modules["fake_broken"]


def test_entry_point_discovery_reports_versions_and_failures(fake_installed, monkeypatch):
    monkeypatch.delenv("MMCORE_PLUGINS", raising=False)
    monkeypatch.delenv("MMCORE_BLOCK_PLUGINS", raising=False)
    pm = PluginManager()
    infos = {info.name: info for info in pm.plugin_infos()}
    assert infos["clips"].version == "9.9.9" and infos["clips"].distribution == "mmcore-clips"
    assert infos["clips"].modalities == ["clip"] and infos["clips"].input_types == ["Clip"]
    assert [(f.name, f.stage) for f in pm.failures] == [("broken", "load")]
    assert "fake_missing_module" in pm.failures[0].error


def test_allow_and_block_lists(fake_installed, monkeypatch):
    monkeypatch.setenv("MMCORE_BLOCK_PLUGINS", "mmcore-clips")
    assert "clips" not in PluginManager().plugin_names()
    monkeypatch.delenv("MMCORE_BLOCK_PLUGINS")
    monkeypatch.setenv("MMCORE_PLUGINS", "clips")
    pm = PluginManager()
    assert pm.plugin_names() == ["clips"] and pm.failures == []
    monkeypatch.setenv("MMCORE_PLUGINS", "")
    assert PluginManager().plugin_names() == []


def test_installed_text_plugin_is_found_through_its_entry_point(monkeypatch):
    monkeypatch.delenv("MMCORE_PLUGINS", raising=False)
    monkeypatch.delenv("MMCORE_BLOCK_PLUGINS", raising=False)
    pm = PluginManager()
    info = {i.name: i for i in pm.plugin_infos()}["text"]
    assert info.distribution == "mmcore-text" and info.modalities == ["text"]
    assert "hf" in info.tokenizer_loaders


# --- pluggy semantics: every hook goes through pluggy's call machinery ----------------------------


class Loader:
    def __init__(self, name: str) -> None:
        self.name = name

    def can_load(self, path) -> bool:
        return True

    def load(self, path):  # pragma: no cover - never loaded here
        raise AssertionError


def loader_plugin(name: str, **opts) -> object:
    class Plugin:
        @hookimpl(**opts)
        def mmcore_register_tokenizers(self, registry):
            registry.add(Loader(name))

    Plugin.__name__ = name
    return Plugin()


def test_implementations_run_in_pluggy_order_with_tryfirst_and_trylast():
    pm = PluginManager(entry_points=False)
    pm.register(loader_plugin("last", trylast=True), name="last")
    pm.register(loader_plugin("a"), name="a")
    pm.register(loader_plugin("first", tryfirst=True), name="first")
    pm.register(loader_plugin("b"), name="b")
    # pluggy: tryfirst, then the others last-registered first, then trylast.
    assert [loader.name for loader in pm.tokenizer_loaders()] == ["first", "b", "a", "last"]
    infos = {info.name: info.tokenizer_loaders for info in pm.plugin_infos()}
    assert infos == {"last": ["last"], "a": ["a"], "first": ["first"], "b": ["b"]}


def test_wrapper_implementations_wrap_the_others():
    events: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def mmcore_register_modalities(self, registry):
            events.append("before")
            result = yield
            events.append(f"after: {sorted(h.name for h in registry_seen)}")
            return result

    registry_seen: list = []

    class Clips:
        @hookimpl
        def mmcore_register_modalities(self, registry):
            handler = ClipHandler()
            registry.add(handler)
            registry_seen.append(handler)
            events.append("clips")

    pm = PluginManager(entry_points=False)
    pm.register(Wrapper(), name="wrapper")
    pm.register(Clips(), name="clips")
    pm.modality_registry()
    assert events == ["before", "clips", "after: ['clip']"]


def test_a_failing_plugin_is_left_out_and_a_wrapper_sees_the_successful_call():
    seen: list[object] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def mmcore_register_modalities(self, registry):
            seen.append((yield))

    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("good"))
    pm.register(plugin_module("broken", fail=True))
    pm.register(Wrapper(), name="wrapper")
    assert pm.modality_registry().handler_for(Clip()).name == "clip"
    assert [(f.name, f.stage) for f in pm.failures] == [("broken", "mmcore_register_modalities")]
    assert seen == [[]]  # the wrapper ran around the call without the broken plugin (subset_hook_caller)


def test_historic_addhooks_reaches_plugins_registered_later_and_adds_specs():
    class Specs:
        @hookspec
        def myplugin_greet(self, name):
            """A hook another plugin offers."""

    class Provider:
        @hookimpl
        def mmcore_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class Implementer:
        @hookimpl
        def myplugin_greet(self, name):
            return f"hello {name}"

    pm = PluginManager(entry_points=False)
    pm.register(Provider(), name="provider")  # registered after the historic call was made
    pm.register(Implementer(), name="implementer")
    assert pm.hook.myplugin_greet(name="mmcore") == ["hello mmcore"]


def test_blocked_plugins_are_not_registered():
    pm = PluginManager(entry_points=False, block=["clips"])
    assert pm.register(plugin_module("clips")) is None
    assert pm.plugin_names() == [] and pm.is_blocked("clips")
    pm2 = PluginManager(entry_points=False)
    pm2.register(plugin_module("clips"))
    pm2.modality_registry()
    pm2.block("clips")
    assert pm2.plugin_names() == []
    with pytest.raises(UnsupportedInputError):
        pm2.modality_registry().handler_for(Clip())


def test_trace_env_logs_hook_calls(monkeypatch, caplog):
    monkeypatch.setenv("MMCORE_TRACE_PLUGINS", "1")
    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("clips"))
    with caplog.at_level(logging.DEBUG, logger="mmcore.plugins"):
        pm.modality_registry()
    messages = [r.getMessage() for r in caplog.records if r.name == "mmcore.plugins"]
    assert any("mmcore_register_modalities" in m for m in messages)
    assert any("finish mmcore_register_modalities" in m for m in messages)


def test_no_trace_without_the_env(monkeypatch, caplog):
    monkeypatch.delenv("MMCORE_TRACE_PLUGINS", raising=False)
    pm = PluginManager(entry_points=False)
    pm.register(plugin_module("clips"))
    with caplog.at_level(logging.DEBUG, logger="mmcore.plugins"):
        pm.modality_registry()
    assert not [r for r in caplog.records if "mmcore_register_modalities" in r.getMessage()]


def test_register_hooks_run_once_and_dispatch_needs_no_hook_call():
    calls: list[str] = []

    class Counting:
        @hookimpl
        def mmcore_register_modalities(self, registry):
            calls.append("register")
            registry.add(ClipHandler())

    pm = PluginManager(entry_points=False)
    pm.register(Counting(), name="counting")
    registry = pm.modality_registry()
    for _ in range(100):
        assert pm.modality_registry().handler_for(Clip()) is registry.handler_for(Clip())
    assert calls == ["register"]


def test_mmcore_plugins_shows_a_plugin_that_failed_to_import_and_why(fake_installed, monkeypatch, capsys):
    from mmcore import plugins
    from mmcore.cli import main

    monkeypatch.delenv("MMCORE_PLUGINS", raising=False)
    monkeypatch.delenv("MMCORE_BLOCK_PLUGINS", raising=False)
    monkeypatch.setattr(plugins, "_default_manager", None)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "clips 9.9.9" in out
    assert re.search(r"broken: FAILED in load: ModuleNotFoundError: .*fake_missing_module", out), out
    monkeypatch.setattr(plugins, "_default_manager", None)


def test_a_plugin_failing_in_historic_addhooks_is_not_registered():
    class Broken:
        @hookimpl
        def mmcore_addhooks(self, pluginmanager):
            raise RuntimeError("no specs today")

    pm = PluginManager(entry_points=False)
    with pytest.raises(PluginError, match="'broken' cannot be registered: no specs today"):
        pm.register(Broken(), name="broken")
    pm.register(plugin_module("clips"))
    assert pm.plugin_names() == ["clips"] and pm.modality_registry().handler_for(Clip()).name == "clip"
