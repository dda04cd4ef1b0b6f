"""The `[audio]` table as a pydantic model (`mmcore_audio.settings` re-exports it)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from mmcore.settings import Settings, validate_table
from mmcore_audio.loading import RESAMPLE_QUALITIES

__all__ = ["AudioTable", "SETTING_KEYS"]

Positive = Annotated[int, Field(ge=1)]
_OLD_RATE, _RATE = "sample_rate", "sampling_rate"


class AudioTable(Settings):
    """The `[audio]` table. `sampling_rate`, `n_fft`, `hop_length`, `chunk_length` and
    `n_samples` are named as in a feature extractor's `preprocessor_config.json`; the old name
    `sample_rate` is accepted with a `DeprecationWarning`. Unset keys come from the encoder's input."""

    model_config = ConfigDict(json_schema_extra=lambda schema: _deprecated_rate(schema))

    sampling_rate: Positive | None = Field(default=None, description="the model's sample rate in Hz (default 16000)")
    n_mels: Positive | None = Field(default=None, description="mel bins (must match the encoder input)")
    n_fft: Positive | None = Field(default=None, description="FFT size (default 400)")
    hop_length: Positive | None = Field(default=None, description="samples between frames (default 160)")
    n_frames: Positive | None = Field(default=None, description="frames per window (default: the encoder input's)")
    chunk_length: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="seconds per window (instead of n_frames)"
    )
    n_samples: Positive | None = Field(default=None, description="samples a raw-waveform encoder takes")
    f_min: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="lowest mel frequency"
    )
    f_max: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="highest mel frequency"
    )
    max_chunks: Positive | None = Field(default=None, description="most windows one input may have")
    batch_size: Positive | None = Field(default=None, description="most windows per encoder call")
    truncate: bool | None = Field(default=None, description="cut audio longer than the maximum instead of failing")
    padding: Literal["max_length", "none"] | None = Field(default=None, description="pad the last window with zeros")
    chunk_mode: Literal["separate", "joint"] | None = Field(
        default=None, description="window-by-window or joint extraction"
    )
    resample_quality: Literal[RESAMPLE_QUALITIES] | None = Field(default=None, description="soxr quality preset")  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and _OLD_RATE in data:
            if _RATE in data:
                raise ValueError(f"give {_RATE} only ({_OLD_RATE} is its old name)")
            warnings.warn(
                f"audio setting '{_OLD_RATE}' is deprecated; use '{_RATE}' (the preprocessor_config.json name)",
                DeprecationWarning,
                stacklevel=2,
            )
            data = {(_RATE if k == _OLD_RATE else k): v for k, v in data.items()}
        return data

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> AudioTable:
        """The table validated; `ConfigError` naming ``audio.<key>`` otherwise."""
        return validate_table(cls, settings, "audio")

    def overrides(self) -> dict[str, Any]:
        """The keys set, by `AudioSettings`' field names."""
        values = {name: getattr(self, name) for name in self.model_fields_set if getattr(self, name) is not None}
        if _RATE in values:
            values[_OLD_RATE] = values.pop(_RATE)
        return values


def _deprecated_rate(schema: dict[str, Any]) -> None:
    properties = schema.setdefault("properties", {})
    properties[_OLD_RATE] = {"type": "integer", "minimum": 1, "deprecated": True, "description": f"use {_RATE}"}


#: Keys the `[audio]` table accepts (`sample_rate` too, deprecated).
SETTING_KEYS: tuple[str, ...] = (*AudioTable.model_fields, _OLD_RATE)
