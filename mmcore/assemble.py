"""Config-driven assembly: a TOML file (or a dict) names the program, tokenizer, plugin settings and
generation settings; `assemble` builds the runner from it.

```toml
program = "model.pte"          # required; relative paths are relative to the config file
tokenizer = "tokenizer/"       # default: the program's folder
data_path = "weights.ptd"      # optional external weights
adapter = "gemma3"             # optional model adapter ("auto": detect); or a table:
# [adapter]
# name = "gemma3"
# max_items = 2                # adapter options (see `mmcore inspect`)

[plugins]
allow = ["text", "image"]      # optional allow-list of plugin names
block = []

[image]                        # a plugin's settings table (validated by the model it registers)
resample = "bicubic"

[generation]                   # GenerationConfig fields
max_new_tokens = 128
temperature = 0.0

[serve]                        # mmcore serve's settings (ServeSettings)
port = 8000
```
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmcore import constants as C
from mmcore.config import GenerationConfig
from mmcore.errors import ConfigError
from mmcore.plugins import PluginManager, get_plugin_manager
from mmcore.program import Program

if TYPE_CHECKING:
    from mmcore.settings.tables import ServeSettings

__all__ = [
    "RunnerConfig",
    "load_config",
    "with_overrides",
    "parse_assignments",
    "assemble",
    "config_schema",
    "TOP_LEVEL_KEYS",
]

TOP_LEVEL_KEYS = ("program", "tokenizer", "data_path", "adapter", "plugins", "generation", "serve")


@dataclass(frozen=True)
class RunnerConfig:
    """A validated runner configuration.

    Fields:
        program: the `.pte` file.
        tokenizer: tokenizer file or directory (default: the program's folder).
        data_path: external weights (`.ptd`), if the program has them.
        allow_plugins / block_plugins: plugin names to load only / never.
        modalities: per-modality settings, e.g. ``{"image": {"resample": "bilinear"}}``.
        generation: default generation settings.
        adapter: the model adapter's name ("auto" detects it), or None for none (plain runner).
        adapter_options: options of the adapter (its ``[adapter]`` table without ``name``).
        serve: the ``[serve]`` settings (`mmcore.serve.ServeSettings`); None when the config has no
            ``[serve]`` table (`mmcore serve` then uses the defaults).
        plugin_settings: the validated model of each table a plugin registered a settings model for.
    """

    program: Path
    tokenizer: Path
    data_path: Path | None = None
    allow_plugins: tuple[str, ...] | None = None
    block_plugins: tuple[str, ...] = ()
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    adapter: str | None = None
    adapter_options: dict[str, Any] = field(default_factory=dict)
    serve: ServeSettings | None = None
    plugin_settings: dict[str, Any] = field(default_factory=dict)


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    plugin_manager: PluginManager | None = None,
    generation_base: GenerationConfig | None = None,
) -> RunnerConfig:
    """Read and validate a config: a TOML file path or an already-parsed mapping.

    Every table is validated by its settings model (`mmcore.settings`; plugins register theirs with
    `mmcore_register_settings`), so a bad value fails here, not at the first prefill.
    `[generation]` keys are applied on top of `generation_base` (default: `GenerationConfig()`).
    Errors name the TOML path of the bad key (``generation.temperature``) and the accepted values.
    """
    from mmcore.settings import read_toml, validate_table

    if isinstance(source, Mapping):
        data, base = dict(source), Path.cwd()
    else:
        path = Path(source)
        data, base = read_toml(path), path.parent
    pm = plugin_manager or get_plugin_manager()
    # Plugin tables (and the plugins' settings models) are looked at only when the config has keys
    # beyond the core's, so a config of core keys alone imports no settings model.
    extra = sorted(k for k in data if k not in TOP_LEVEL_KEYS)
    tables = _plugin_tables(pm) if extra else []
    unknown = [k for k in extra if k not in tables]
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown}; accepted top-level keys: {list(TOP_LEVEL_KEYS)} and the "
            f"settings tables of installed plugins: {tables}"
        )
    if "program" not in data:
        raise ConfigError("config key 'program' is required: the path of the .pte file")
    program = _path(data["program"], "program", base)
    tokenizer = _path(data["tokenizer"], "tokenizer", base) if "tokenizer" in data else program.parent
    data_path = _path(data["data_path"], "data_path", base) if "data_path" in data else None
    allow, block = _plugins_table(data["plugins"]) if "plugins" in data else (None, ())
    changes = _generation_table(data["generation"]) if "generation" in data else {}
    serve = _serve_table(data["serve"], base) if "serve" in data else None
    modality_names = {h.name for h in pm.modality_registry().handlers} if extra else set()
    models = pm.settings_models() if extra else {}
    modalities: dict[str, dict[str, Any]] = {}
    plugin_settings: dict[str, Any] = {}
    for name in extra:
        if name in modality_names:
            modalities[name] = _modality_settings(pm, name, data[name])
        if name in models:
            plugin_settings[name] = validate_table(models[name], data[name], name)
    adapter, adapter_options = _adapter(pm, data["adapter"]) if "adapter" in data else (None, {})
    return RunnerConfig(
        program=program,
        tokenizer=tokenizer,
        data_path=data_path,
        allow_plugins=allow,
        block_plugins=block,
        modalities=modalities,
        generation=_generation(changes, generation_base or GenerationConfig()),
        adapter=adapter,
        adapter_options=adapter_options,
        serve=serve,
        plugin_settings=plugin_settings,
    )


def _plugins_table(table: Any) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """`[plugins]` validated: the allow-list (None: all) and the block-list."""
    from mmcore.settings import validate_table
    from mmcore.settings.tables import PluginsTable

    plugins = validate_table(PluginsTable, table, "plugins")
    return (tuple(plugins.allow) if plugins.allow is not None else None), tuple(plugins.block)


def _generation_table(table: Any) -> dict[str, Any]:
    """`[generation]` validated, as `GenerationConfig.replace` arguments (the keys it sets)."""
    from mmcore.settings import validate_table
    from mmcore.settings.tables import GenerationTable

    return validate_table(GenerationTable, table, "generation").changes()


def _serve_table(table: Any, base: Path) -> ServeSettings:
    from mmcore.settings.tables import ServeSettings

    return ServeSettings.from_table(table, base)


def _plugin_tables(pm: PluginManager) -> list[str]:
    """The table names plugins own: modality names and the tables of registered settings models."""
    return sorted({h.name for h in pm.modality_registry().handlers} | set(pm.settings_models()))


def with_overrides(
    config: RunnerConfig,
    *,
    program: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    modalities: Mapping[str, Mapping[str, Any]] | None = None,
    plugin_manager: PluginManager | None = None,
) -> RunnerConfig:
    """`config` with a different program or tokenizer and extra modality settings (validated)."""
    pm = plugin_manager or get_plugin_manager()
    changes: dict[str, Any] = {}
    if program is not None:
        changes["program"] = Path(program)
        if tokenizer is None and config.tokenizer == config.program.parent:
            changes["tokenizer"] = Path(program).parent
    if tokenizer is not None:
        changes["tokenizer"] = Path(tokenizer)
    if modalities:
        merged = {name: dict(values) for name, values in config.modalities.items()}
        known = sorted(h.name for h in pm.modality_registry().handlers)
        for name, values in modalities.items():
            if name not in known:
                raise ConfigError(f"unknown modality '{name}' in settings; installed modalities: {known}")
            merged[name] = _modality_settings(pm, name, {**merged.get(name, {}), **values})
        changes["modalities"] = merged
    return dataclasses.replace(config, **changes)


def assemble(
    source: str | os.PathLike[str] | Mapping[str, Any] | RunnerConfig,
    *,
    plugin_manager: PluginManager | None = None,
    program: Program | None = None,
) -> Any:
    """Build a runner (`MultimodalRunner` or `TextLLMRunner`, by the program's methods) from a config.

    The runner's `generation_config` attribute holds the config's generation settings. When the
    config names an `adapter` ("auto" detects it), the adapter's preprocessing settings (under the
    config's own tables) and stop tokens are applied; `mmcore.open_model(config)` gives the
    `ChatModel` with the adapter's chat renderer too.
    """
    from mmcore.runner import MultimodalRunner, TextLLMRunner

    config = source if isinstance(source, RunnerConfig) else load_config(source, plugin_manager=plugin_manager)
    pm = plugin_manager
    if pm is None:
        pm = (
            PluginManager(allow=config.allow_plugins, block=config.block_plugins)
            if config.allow_plugins is not None or config.block_plugins
            else get_plugin_manager()
        )
    if config.adapter is not None:
        from mmcore.chat_model import build_chat_model

        model = build_chat_model(config, plugin_manager=pm, program=program)
        return model.runner
    if program is None:
        program = Program(config.program, data_path=config.data_path)
    runner: MultimodalRunner | TextLLMRunner
    if program.has_method(C.TEXT_DECODER):
        runner = MultimodalRunner(program, config.tokenizer, plugin_manager=pm, modality_settings=config.modalities)
    else:
        if config.modalities:
            raise ConfigError(
                f"{config.program} is a text-only program; it takes no {sorted(config.modalities)} settings"
            )
        runner = TextLLMRunner(program, config.tokenizer, plugin_manager=pm)
    runner.generation_config = config.generation
    return runner


def config_schema(plugin_manager: PluginManager | None = None) -> dict[str, Any]:
    """JSON Schema of the config file: the core's tables and the installed plugins' tables, each
    the JSON Schema of the settings model `load_config` validates it with."""
    from mmcore.settings.tables import TOP_LEVEL_SCHEMA, GenerationTable, PluginsTable, ServeSettings

    pm = plugin_manager or get_plugin_manager()
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {
        **TOP_LEVEL_SCHEMA,
        "adapter": {
            "description": "model adapter name ('auto' detects it), or a table with 'name' and the adapter's options",
            "oneOf": [
                {"type": "string", "enum": ["auto", *pm.adapter_registry().names()]},
                {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            ],
        },
        "plugins": _model_schema(PluginsTable, defs),
        "generation": _model_schema(GenerationTable, defs),
        "serve": _model_schema(ServeSettings, defs),
    }
    models = pm.settings_models()
    handlers = {h.name: h for h in pm.modality_registry().handlers}
    for name in _plugin_tables(pm):
        if name in models:
            properties[name] = _model_schema(models[name], defs)
            continue
        known = getattr(handlers[name], "settings_keys", None)
        if known is not None:
            keys: dict[str, Any] = {key: {} for key in sorted(known)}
            properties[name] = {"type": "object", "additionalProperties": False, "properties": keys}
        else:
            properties[name] = {"type": "object"}
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mmcore runner config",
        "type": "object",
        "required": ["program"],
        "additionalProperties": False,
        "properties": properties,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _model_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic model's JSON Schema, its `$defs` moved into the config schema's `defs`."""
    schema: dict[str, Any] = model.model_json_schema(ref_template="#/$defs/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        if defs.setdefault(name, definition) != definition:
            raise ConfigError(f"two settings models define a different '{name}'; rename one of them")
    return schema


def _modality_settings(pm: PluginManager, name: str, value: Any) -> dict[str, Any]:
    """A modality's settings table, validated: by the settings model a plugin registered for it, else
    by the handler's `settings_keys` / `check_settings`. Returned as given (the handler reads it)."""
    from mmcore.settings import validate_table

    settings = _table(value, name)
    model = pm.settings_models().get(name)
    if model is not None:
        validate_table(model, settings, name)
        return settings
    handler = pm.modality_registry().get(name)
    known = getattr(handler, "settings_keys", None)
    if known is not None:
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"unknown key {name}.{unknown[0]}; accepted: {sorted(known)}")
    check = getattr(handler, "check_settings", None)
    if callable(check):
        try:
            check(settings)
        except ConfigError as exc:
            raise ConfigError(f"[{name}] {exc}") from None
    return settings


def _adapter(pm: PluginManager, value: Any) -> tuple[str, dict[str, Any]]:
    """The adapter name and options of the `adapter` key: a name, or a table with `name` and options."""
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, Mapping):
        options = dict(value)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError('config table [adapter] needs name = "ADAPTER" (a string), e.g. name = "gemma3"')
    else:
        raise ConfigError(
            f"config key 'adapter' must be an adapter name (adapter = \"gemma3\") or a table [adapter], "
            f"got {type(value).__name__}"
        )
    if not name:
        raise ConfigError("config key 'adapter' must not be empty; give an adapter name or \"auto\"")
    if name == "auto":
        if options:
            raise ConfigError(f'adapter options {sorted(options)} need a named adapter, not "auto"')
        return name, {}
    return name, pm.adapter_registry().check_options(name, options)


def _generation(changes: dict[str, Any], base: GenerationConfig) -> GenerationConfig:
    """`base` with a validated `[generation]` table's keys applied (cross-field checks are GenerationConfig's)."""
    try:
        return base.replace(**changes)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("GenerationConfig.", "generation.")) from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key '{where}' must be a table ([{where}]), got {type(value).__name__}")
    return dict(value)


def _path(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key '{where}' must be a non-empty path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def parse_assignments(assignments: list[str], error: Callable[[str], Any]) -> dict[str, dict[str, Any]]:
    """`MODALITY.KEY=VALUE` strings (the CLI's `--set`) as `with_overrides`' `modalities`: each value
    read as a TOML value, a bare word as a string; `error(message)` is called for a malformed one."""
    settings: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        modality, dot, rest = assignment.partition(".")
        key, eq, value = rest.partition("=")
        if not (dot and eq and key):
            error(f"--set takes MODALITY.KEY=VALUE, got {assignment!r}")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word is a string
        settings.setdefault(modality, {})[key] = parsed
    return settings


class _AssembleModule(types.ModuleType):
    """This module, callable as its `assemble()`.

    `mmcore.assemble` names both this module and the public function: importing the module sets the
    package attribute to the module (the package imports its public names lazily), so calling
    `mmcore.assemble(...)` must work on either."""

    def __call__(
        self,
        source: str | os.PathLike[str] | Mapping[str, Any] | RunnerConfig,
        *,
        plugin_manager: PluginManager | None = None,
        program: Program | None = None,
    ) -> Any:
        return assemble(source, plugin_manager=plugin_manager, program=program)


sys.modules[__name__].__class__ = _AssembleModule
