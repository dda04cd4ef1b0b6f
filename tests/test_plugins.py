"""Plugin discovery and registration: entry points, allow/block lists, faulty plugins, dispatch."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

from mmcore import EmbeddingsInput, PluginError, PrefillContext, TokensInput, UnsupportedInputError, hookimpl
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
    pm.modality_registry()
    failure = next(f for f in pm.failures if f.name == "second")
    assert "first" in failure.error and "Clip" in failure.error


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
