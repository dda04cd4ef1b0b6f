"""Sampling defaults from a model's ``generation_config.json``, read as transformers reads them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.config import GenerationConfig
from mmcore.errors import ConfigError

__all__ = ["GENERATION_CONFIG_FILE", "GenerationDefaults", "read_generation_defaults"]

#: The file Hugging Face exporters leave next to the model.
GENERATION_CONFIG_FILE = "generation_config.json"
#: transformers' values for sampling fields a file leaves out when ``do_sample`` is true.
_HF_SAMPLING = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}


@dataclass(frozen=True)
class GenerationDefaults:
    """What a ``generation_config.json`` asks for.

    Attributes:
        path: the file.
        settings: `GenerationConfig` fields it sets (``do_sample: false`` -> ``temperature 0``).
        eos_token_ids: its ``eos_token_id`` (one id or a list), extra stop tokens.
    """

    path: Path
    settings: dict[str, Any] = field(default_factory=dict)
    eos_token_ids: frozenset[int] = frozenset()

    def apply(self, base: GenerationConfig) -> GenerationConfig:
        """``base`` with the file's settings on top."""
        return base.replace(**self.settings)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for ``mmcore inspect``)."""
        return {"file": str(self.path), "settings": dict(self.settings), "eos_token_ids": sorted(self.eos_token_ids)}


def read_generation_defaults(folder: Path) -> GenerationDefaults | None:
    """The defaults of ``folder/generation_config.json``, or None when there is no such file.

    Like transformers, ``do_sample`` absent or false means greedy decoding (temperature 0);
    ``do_sample: true`` samples with the file's ``temperature``/``top_k``/``top_p``, each
    defaulting to transformers' 1.0 / 50 / 1.0. ``repetition_penalty`` and ``max_new_tokens``
    carry over (``max_length`` becomes ``seq_len`` when ``max_new_tokens`` is absent). A value
    transformers would reject raises `ConfigError` naming the file, the field and the fix.
    """
    path = Path(folder) / GENERATION_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}; fix or delete the file")
    return GenerationDefaults(path=path, settings=_settings(path, data), eos_token_ids=_eos_ids(path, data))


def _settings(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    do_sample = data.get("do_sample", False)
    if not isinstance(do_sample, bool):
        raise _bad(path, "do_sample", do_sample, "true or false")
    settings: dict[str, Any] = {}
    if do_sample:
        temperature = _number(path, data, "temperature", _HF_SAMPLING["temperature"])
        if temperature <= 0:
            raise _bad(path, "temperature", temperature, "a number > 0 when do_sample is true (or do_sample false)")
        top_k = _integer(path, data, "top_k", int(_HF_SAMPLING["top_k"]))
        if top_k < 0:
            raise _bad(path, "top_k", top_k, "an integer >= 0 (0 = no limit)")
        top_p = _number(path, data, "top_p", _HF_SAMPLING["top_p"])
        if not 0 < top_p <= 1:
            raise _bad(path, "top_p", top_p, "a number in (0, 1]")
        settings.update(temperature=float(temperature), top_k=top_k, top_p=float(top_p))
    else:
        settings["temperature"] = 0.0
    if data.get("repetition_penalty") is not None:
        penalty = _number(path, data, "repetition_penalty", 1.0)
        if penalty <= 0:
            raise _bad(path, "repetition_penalty", penalty, "a number > 0 (1 = off)")
        settings["repetition_penalty"] = float(penalty)
    if data.get("max_new_tokens") is not None:
        settings["max_new_tokens"] = _positive(path, data, "max_new_tokens")
    elif data.get("max_length") is not None:
        settings["seq_len"] = _positive(path, data, "max_length")
    return settings


def _eos_ids(path: Path, data: dict[str, Any]) -> frozenset[int]:
    value = data.get("eos_token_id")
    if value is None:
        return frozenset()
    ids = value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise _bad(path, "eos_token_id", value, "a token id >= 0 or a list of them")
    return frozenset(ids)


def _bad(path: Path, name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{path}: {name} must be {expected}, got {value!r}; fix or remove '{name}' in that file")


def _number(path: Path, data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(path, name, value, "a finite number")
    return float(value)


def _integer(path: Path, data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(path, name, value, "an integer")
    return value


def _positive(path: Path, data: dict[str, Any], name: str) -> int:
    value = _integer(path, data, name, 0)
    if value < 1:
        raise _bad(path, name, value, "a positive integer")
    return value
