"""The hooks mmcore plugins implement.

Plugins mark implementations with `mmcore.hookimpl` and are found through the `mmcore` entry-point
group. Every hook is called through pluggy, so `tryfirst`/`trylast`, `wrapper=True` and
`historic` behave as pluggy documents. The register hooks are called once, when a
`PluginManager` first builds the registry they fill; none is ever called per input or per token.
Hooks evolve only by adding arguments, and an implementation may accept a subset of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mmcore.adapters import AdapterRegistrar
    from mmcore.plugins import PluginManager
    from mmcore.registry import ModalityRegistrar, TokenizerRegistrar
    from mmcore.settings import SettingsRegistrar

__all__ = [
    "hookspec",
    "hookimpl",
    "mmcore_addhooks",
    "mmcore_register_modalities",
    "mmcore_register_tokenizers",
    "mmcore_register_adapters",
    "mmcore_register_settings",
]

PROJECT_NAME = "mmcore"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(historic=True)
def mmcore_addhooks(pluginmanager: PluginManager) -> None:
    """Add hook specifications of your own, for other plugins to implement.

    A historic hook: called once for every plugin, when the plugin is registered (plugins
    registered later are called too). Call `pluginmanager.add_hookspecs(module)` with a module or
    class of `mmcore.hookspec`-marked functions; call the new hooks through `pluginmanager.hook`.
    Return nothing.

    :param pluginmanager: the `mmcore.PluginManager` the plugin is registered with.
    """


@hookspec
def mmcore_register_modalities(registry: ModalityRegistrar) -> None:
    """Register modality handlers: objects that turn inputs of some types into tokens or embeddings.

    Called once per plugin manager, when the modality registry is first needed (the first runner
    built). Call `registry.add(handler)` for each handler; a handler declares `name`,
    `input_types`, `preprocess(item, ctx)` and `prefill(prepared, ctx)` (see
    `mmcore.registry.ModalityHandler`). Registering an input type another plugin already handles
    raises `PluginError` naming both plugins. Return nothing.

    Arrays: handlers return numpy arrays (`preprocess`) and `EmbeddingsInput` of numpy arrays
    (`prefill`); program methods take and return numpy. Torch tensors are accepted wherever an
    array is and converted at the edge, but the run path imports no torch, so a plugin that
    returns tensors makes every request import it.

    :param registry: the registrar that records which plugin added each handler.
    """


@hookspec
def mmcore_register_tokenizers(registry: TokenizerRegistrar) -> None:
    """Register tokenizer loaders: objects that recognise and load tokenizer files.

    Called once per plugin manager, when `mmcore.load_tokenizer` is first used. Call
    `registry.add(loader)` for each loader; a loader declares `name`, `can_load(path)` and
    `load(path)` (see `mmcore.tokenizer.TokenizerLoader`). Loaders are tried in the order pluggy
    calls the implementations (later-registered plugins first, `tryfirst` before, `trylast` after);
    pass `registry.add(loader, fallback=True)` for catch-all loaders that should come last.
    Return nothing.

    :param registry: the registrar that records which plugin added each loader.
    """


@hookspec
def mmcore_register_adapters(registry: AdapterRegistrar) -> None:
    """Register model adapters: objects that recognise a family of programs and say how to run them.

    Called once per plugin manager, when the adapter registry is first needed (`mmcore.open_model`,
    `mmcore run`, `mmcore inspect`, or a config naming an `adapter`). Call `registry.add(adapter)`
    for each adapter; an adapter declares `name`, `fallback`, `options`, `detect(source)` and
    `configure(source, tokenizer, options)` (see `mmcore.adapters.ModelAdapter`). Registering a
    name another plugin already registered raises `PluginError` naming both plugins. Return nothing.

    :param registry: the registrar that records which plugin added each adapter.
    """


@hookspec
def mmcore_register_settings(registry: SettingsRegistrar) -> None:
    """Register the schema and validation of config tables: one pydantic model per table.

    Called once per plugin manager, when a config is first loaded or its schema built
    (`mmcore.load_config`, `mmcore.assemble`, `mmcore config schema`). Call
    `registry.add(table, model)` with the table's name (a modality's name, e.g. ``"image"``) and a
    pydantic model class (subclass `mmcore.settings.Settings` for strict types and unknown keys
    rejected). `load_config` validates the table with the model, so a bad value fails when the
    config is loaded, and the model's JSON Schema becomes the table's part of the config schema.
    Registering a table another plugin already registered raises `PluginError` naming both
    plugins. Return nothing.

    :param registry: the registrar that records which plugin added each table's model.
    """
