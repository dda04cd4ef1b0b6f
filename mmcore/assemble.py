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

[image]                        # settings of the "image" modality (any installed modality name)
resample = "bicubic"

[generation]                   # GenerationConfig fields
max_new_tokens = 128
temperature = 0.0
```
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore import constants as C
from mmcore.config import GenerationConfig
from mmcore.errors import ConfigError
from mmcore.plugins import PluginManager, get_plugin_manager
from mmcore.program import Program

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
_PLUGIN_KEYS = ("allow", "block")


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


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    plugin_manager: PluginManager | None = None,
    generation_base: GenerationConfig | None = None,
) -> RunnerConfig:
    """Read and validate a config: a TOML file path or an already-parsed mapping.

    `[generation]` keys are applied on top of `generation_base` (default: `GenerationConfig()`).
    Errors name the TOML path of the bad key (``generation.temperature``) and the accepted values.
    """
    if isinstance(source, Mapping):
        data, base = dict(source), Path.cwd()
    else:
        path = Path(source)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        base = path.parent
    pm = plugin_manager or get_plugin_manager()
    modality_names = sorted(h.name for h in pm.modality_registry().handlers)
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS and k not in modality_names]
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown}; accepted top-level keys: {list(TOP_LEVEL_KEYS)} and the "
            f"settings tables of installed modalities: {modality_names}"
        )
    if "program" not in data:
        raise ConfigError("config key 'program' is required: the path of the .pte file")
    program = _path(data["program"], "program", base)
    tokenizer = _path(data["tokenizer"], "tokenizer", base) if "tokenizer" in data else program.parent
    data_path = _path(data["data_path"], "data_path", base) if "data_path" in data else None
    plugins = _table(data.get("plugins", {}), "plugins")
    bad = [k for k in plugins if k not in _PLUGIN_KEYS]
    if bad:
        raise ConfigError(f"unknown key(s) plugins.{bad[0]}; accepted: {list(_PLUGIN_KEYS)}")
    allow = _names(plugins["allow"], "plugins.allow") if "allow" in plugins else None
    block = _names(plugins.get("block", []), "plugins.block")
    modalities = {name: _modality_settings(pm, name, data[name]) for name in modality_names if name in data}
    adapter, adapter_options = _adapter(pm, data["adapter"]) if "adapter" in data else (None, {})
    return RunnerConfig(
        program=program,
        tokenizer=tokenizer,
        data_path=data_path,
        allow_plugins=allow,
        block_plugins=block,
        modalities=modalities,
        generation=_generation(_table(data.get("generation", {}), "generation"), generation_base or GenerationConfig()),
        adapter=adapter,
        adapter_options=adapter_options,
    )


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
    """JSON Schema of the config file, with the settings tables of the installed modalities."""
    pm = plugin_manager or get_plugin_manager()
    generation: dict[str, Any] = {}
    for f in dataclasses.fields(GenerationConfig):
        generation[f.name] = _field_schema(f)
    properties: dict[str, Any] = {
        "program": {"type": "string", "description": "path of the .pte program"},
        "tokenizer": {"type": "string", "description": "tokenizer file or directory (default: the program's folder)"},
        "data_path": {"type": "string", "description": "external weights (.ptd)"},
        "adapter": {
            "description": "model adapter name ('auto' detects it), or a table with 'name' and the adapter's options",
            "oneOf": [
                {"type": "string", "enum": ["auto", *pm.adapter_registry().names()]},
                {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            ],
        },
        "plugins": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "allow": {"type": "array", "items": {"type": "string"}},
                "block": {"type": "array", "items": {"type": "string"}},
            },
        },
        "generation": {"type": "object", "additionalProperties": False, "properties": generation},
    }
    for handler in pm.modality_registry().handlers:
        schema_fn = getattr(handler, "settings_schema", None)
        known = getattr(handler, "settings_keys", None)
        if callable(schema_fn):
            properties[handler.name] = schema_fn()
        elif known is not None:
            keys: dict[str, Any] = {key: {} for key in sorted(known)}
            properties[handler.name] = {"type": "object", "additionalProperties": False, "properties": keys}
        else:
            properties[handler.name] = {"type": "object"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mmcore runner config",
        "type": "object",
        "required": ["program"],
        "additionalProperties": False,
        "properties": properties,
    }


def _modality_settings(pm: PluginManager, name: str, value: Any) -> dict[str, Any]:
    settings = _table(value, name)
    handler = pm.modality_registry().get(name)
    known = getattr(handler, "settings_keys", None)
    if known is not None:
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"unknown key {name}.{unknown[0]}; the '{name}' plugin accepts: {sorted(known)}")
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


def _generation(table: dict[str, Any], base: GenerationConfig) -> GenerationConfig:
    names = [f.name for f in dataclasses.fields(GenerationConfig)]
    unknown = [k for k in table if k not in names]
    if unknown:
        raise ConfigError(f"unknown key generation.{unknown[0]}; accepted: {names}")
    if isinstance(table.get("stop"), list):
        table = {**table, "stop": tuple(table["stop"])}
    try:
        return base.replace(**table)
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


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{where}' must be a list of plugin names, got {value!r}")
    return tuple(value)


def _field_schema(f: dataclasses.Field[Any]) -> dict[str, Any]:
    types: dict[str, dict[str, Any]] = {
        "bool": {"type": "boolean"},
        "int": {"type": "integer"},
        "float": {"type": "number"},
        "int | None": {"type": ["integer", "null"]},
        "tuple[str, ...]": {"type": "array", "items": {"type": "string"}},
    }
    schema: dict[str, Any] = {**types.get(str(f.type), {})}
    if f.default is not dataclasses.MISSING:
        schema["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    return schema


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
