"""Settings tables as typed pydantic models: one model per TOML table, from which both the
validation of a config and its JSON Schema (`mmcore config schema`) come.

A model subclasses `Settings` (unknown keys rejected, no type coercion: ``"false"`` is not a
boolean). `validate_table(Model, table, where)` validates a table and turns pydantic's errors into a
`ConfigError` naming the key's TOML path (``image.max_pixels``), what was expected and what was given.
Plugins contribute models for their tables through the `mmcore_register_settings` hook.

pydantic is imported with the first settings model (`Settings` lives in `mmcore.settings.base`
and is imported from here on first use), so reading a TOML file or registering nothing costs no
pydantic import: `mmcore run` without settings tables never imports it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mmcore.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from mmcore.settings.base import Settings

__all__ = ["Settings", "SettingsRegistrar", "read_toml", "validate_table", "error_path"]

M = TypeVar("M", bound="BaseModel")


def __getattr__(name: str) -> Any:
    if name == "Settings":
        from mmcore.settings.base import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_table(model: type[M], table: Any, where: str) -> M:
    """`table` (a TOML table) validated by `model`; raises `ConfigError` naming the bad key's path."""
    from pydantic import ValidationError

    if not isinstance(table, Mapping):
        raise ConfigError(f"config key '{where}' must be a table ([{where}]), got {type(table).__name__}")
    try:
        return model.model_validate(dict(table))
    except ValidationError as exc:
        raise ConfigError(_message(model, exc, where)) from None


def error_path(where: str, loc: tuple[int | str, ...]) -> str:
    """The TOML path of a pydantic error location inside table `where` (``image.size``)."""
    return ".".join([where, *(str(part) for part in loc)]) if where else ".".join(str(p) for p in loc)


def _message(model: type[BaseModel], exc: ValidationError, where: str) -> str:
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    path = error_path(where, loc)
    if error["type"] == "extra_forbidden":
        accepted = sorted(model.model_fields) if len(loc) == 1 else None
        tail = f"; accepted: {accepted}" if accepted is not None else ""
        return f"unknown key {path}{tail}"
    if error["type"] == "missing":
        return f"{path} is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    shown = "" if not loc or isinstance(got, Mapping) else f", got {got!r}"
    more = len(exc.errors()) - 1
    also = f" (and {more} more error{'s' if more > 1 else ''} in [{where}])" if more and where else ""
    return f"{path}: {message}{shown}{also}"


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file's contents (read in binary, as `tomllib` requires); `ConfigError` when it is
    missing or malformed."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {file} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None


class SettingsRegistrar:
    """The settings-model registry as plugins see it in `mmcore_register_settings`."""

    def __init__(self, models: dict[str, type[BaseModel]], owners: dict[str, str], plugin: Any) -> None:
        self._models = models
        self._owners = owners
        self._plugin = plugin

    @property
    def plugin(self) -> str:
        """The plugin whose hook implementation is registering."""
        return str(self._plugin() if callable(self._plugin) else self._plugin)

    def add(self, table: str, model: type[BaseModel]) -> None:
        """Register `model` (a pydantic model class) as the schema and validation of the `[table]` table."""
        from pydantic import BaseModel

        from mmcore.errors import PluginError

        plugin = self.plugin
        if not isinstance(table, str) or not table.isidentifier():
            raise PluginError(f"plugin '{plugin}' registered settings for a table named {table!r}; use an identifier")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise PluginError(
                f"plugin '{plugin}': the settings of [{table}] must be a pydantic model class, got {model!r}"
            )
        if table in self._owners:
            raise PluginError(
                f"plugin '{plugin}' registered settings for [{table}], which plugin '{self._owners[table]}' "
                "already registered"
            )
        self._models[table] = model
        self._owners[table] = plugin
