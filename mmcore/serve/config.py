"""The server's settings: the ``[serve]`` table of the TOML config, overridden by command-line flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmcore.errors import ConfigError

__all__ = ["ServeSettings", "serve_table"]


@dataclass(frozen=True)
class ServeSettings:
    """How `mmcore serve` serves.

    Fields:
        host: the address to listen on.
        port: the TCP port (0: any free port; the log says which).
        model_id: the id clients name in ``model`` (default: the program's file stem).
        api_key: when set, requests need ``Authorization: Bearer <api_key>``.
        parallel: slots (runners with their own KV cache) serving requests at once.
        max_queue: requests that may wait for a slot; more get a 429.
        media_dir: local media paths and ``file://`` URLs are allowed only inside this folder.
        prefix_cache: reuse each slot's cached conversation prefix (off: prefill every request whole).
        tool_parser: the tool-call format (default: the adapter family's).
        max_body_mb: the largest request body, in MiB (413 beyond).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model_id: str | None = None
    api_key: str | None = None
    parallel: int = 1
    max_queue: int = 64
    media_dir: Path | None = None
    prefix_cache: bool = True
    tool_parser: str | None = None
    max_body_mb: float = 32.0

    def __post_init__(self) -> None:
        for name, low in (("port", 0), ("parallel", 1), ("max_queue", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"serve.{name} must be an integer >= {low}, got {value!r}")
        if not 0 < self.port < 65536 and self.port != 0:
            raise ConfigError(f"serve.port must be in [0, 65535], got {self.port}")
        if not isinstance(self.prefix_cache, bool):
            raise ConfigError(f"serve.prefix_cache must be true or false, got {self.prefix_cache!r}")
        if isinstance(self.max_body_mb, bool) or not isinstance(self.max_body_mb, int | float) or self.max_body_mb <= 0:
            raise ConfigError(f"serve.max_body_mb must be a positive number, got {self.max_body_mb!r}")
        for name in ("host", "model_id", "api_key", "tool_parser"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"serve.{name} must be a string, got {value!r}")
        if self.media_dir is not None:
            object.__setattr__(self, "media_dir", Path(self.media_dir).expanduser())

    @classmethod
    def from_table(cls, table: Mapping[str, Any], base: Path | None = None) -> ServeSettings:
        """Settings from a ``[serve]`` table (relative `media_dir` taken from `base`)."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in table if k not in names]
        if unknown:
            raise ConfigError(f"unknown key serve.{unknown[0]}; accepted: {names}")
        values = dict(table)
        if "media_dir" in values:
            if not isinstance(values["media_dir"], str):
                raise ConfigError(f"serve.media_dir must be a path string, got {values['media_dir']!r}")
            values["media_dir"] = (base or Path.cwd()) / Path(values["media_dir"]).expanduser()
        return cls(**values)

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with the given (non-None) fields changed."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def serve_table(path: str | os.PathLike[str] | None) -> ServeSettings:
    """The ``[serve]`` settings of a TOML config file (defaults when there is no file or table)."""
    if path is None:
        return ServeSettings()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    table = data.get("serve", {})
    if not isinstance(table, dict):
        raise ConfigError(f"serve in {file} must be a table ([serve]), got {type(table).__name__}")
    return ServeSettings.from_table(table, file.parent)
