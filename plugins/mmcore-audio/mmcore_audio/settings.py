"""Audio settings: defaults read from the encoder's input shape, overridable per model or config.

The `[audio]` table's pydantic model (`AudioTable`, `SETTING_KEYS`) lives in `mmcore_audio.table`
and is imported from here on first use: audio with no settings imports no pydantic.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mmcore.arrays import numpy_dtype
from mmcore.errors import ConfigError
from mmcore.program import TensorSpec
from mmcore_audio.loading import RESAMPLE_QUALITIES
from mmcore_audio.mel import MelConfig

if TYPE_CHECKING:
    from mmcore_audio.table import SETTING_KEYS, AudioTable

__all__ = ["AudioSettings", "AudioTable", "EncoderKind", "SETTING_KEYS"]

logger = logging.getLogger(__name__)

EncoderKind = Literal["mel", "raw"]


def __getattr__(name: str) -> Any:
    if name in ("AudioTable", "SETTING_KEYS"):
        from mmcore_audio import table

        return getattr(table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _overrides(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """`AudioTable.parse(settings).overrides()`; an empty table needs no validation."""
    if not settings:
        return {}  # no key set (tests/plugins check it)
    from mmcore_audio.table import AudioTable

    return AudioTable.parse(settings).overrides()


_FLOAT_DTYPES = ("float32", "bfloat16", "float16")
_FLOAT32: np.dtype[Any] = np.dtype(np.float32)


@dataclass(frozen=True)
class AudioSettings:
    """How audio becomes encoder input.

    Fields:
        kind: "mel" (log-mel features `[B, n_mels, n_frames]`) or "raw" (samples `[1, n_samples]`).
        sample_rate: the model's sample rate (the table's `sampling_rate`); every input is resampled to it.
        n_mels, n_fft, hop_length, f_min, f_max: log-mel parameters (Whisper's by default).
        n_frames: frames per window; a window is `n_frames * hop_length` samples (3000 = 30 s).
        n_samples: samples a "raw" encoder takes.
        max_chunks: most windows one input may have; longer audio is an error unless `truncate`.
        batch_size: most windows per encoder call (the encoder's batch bound); more run in turns.
        truncate: cut audio longer than the maximum instead of failing.
        padding: "max_length" pads the last window (or a raw waveform) with zeros to full length;
            "none" feeds a raw waveform as it is (encoders with a dynamic sample dimension).
        chunk_mode: "separate" extracts each window on its own (its own log-max; Voxtral via
            mistral-common); "joint" extracts the zero-padded audio in one pass (one log-max,
            STFT across window edges; transformers' `VoxtralProcessor`).
        resample_quality: soxr quality preset ("HQ" or "VHQ" recommended).
        dtype: the encoder's input numpy dtype (features are made in float32, then cast; bfloat16
            is `ml_dtypes.bfloat16`); a dtype name or a torch dtype is converted.
    """

    kind: EncoderKind = "mel"
    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 400
    hop_length: int = 160
    n_frames: int = 3000
    n_samples: int = 480000
    f_min: float = 0.0
    f_max: float = 8000.0
    max_chunks: int = 1
    batch_size: int = 1
    truncate: bool = False
    padding: Literal["max_length", "none"] = "max_length"
    chunk_mode: Literal["separate", "joint"] = "separate"
    resample_quality: str = "HQ"
    dtype: np.dtype[Any] = _FLOAT32

    def __post_init__(self) -> None:
        if self.kind not in ("mel", "raw"):
            raise ConfigError(f"audio setting 'kind' must be 'mel' or 'raw', got {self.kind!r}")
        for name in ("n_frames", "n_samples", "max_chunks", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"audio setting '{name}' must be a positive integer, got {value!r}")
        if not isinstance(self.truncate, bool):
            raise ConfigError(f"audio setting 'truncate' must be true or false, got {self.truncate!r}")
        if self.padding not in ("max_length", "none"):
            raise ConfigError(f"audio setting 'padding' must be 'max_length' or 'none', got {self.padding!r}")
        if self.chunk_mode not in ("separate", "joint"):
            raise ConfigError(f"audio setting 'chunk_mode' must be 'separate' or 'joint', got {self.chunk_mode!r}")
        if self.resample_quality not in RESAMPLE_QUALITIES:
            raise ConfigError(
                f"audio setting 'resample_quality' must be one of {list(RESAMPLE_QUALITIES)}, "
                f"got {self.resample_quality!r}"
            )
        try:
            dtype = numpy_dtype(self.dtype)
        except TypeError as exc:
            raise ConfigError(f"audio setting 'dtype' must be a dtype, got {self.dtype!r}") from exc
        if dtype.name not in _FLOAT_DTYPES:
            raise ConfigError(
                f"the audio encoder takes {dtype.name} input; mmcore-audio makes float32, bfloat16 or float16"
            )
        object.__setattr__(self, "dtype", dtype)
        if self.kind == "mel":
            self.mel_config()  # validates the log-mel parameters

    @property
    def window_samples(self) -> int:
        """Samples of one window ("mel") or of the whole waveform ("raw")."""
        return self.n_frames * self.hop_length if self.kind == "mel" else self.n_samples

    @property
    def max_seconds(self) -> float:
        """Longest audio accepted without truncation, in seconds."""
        return self.window_samples * (self.max_chunks if self.kind == "mel" else 1) / self.sample_rate

    def mel_config(self) -> MelConfig:
        """The log-mel parameters."""
        return MelConfig(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            f_min=float(self.f_min),
            f_max=float(self.f_max),
        )

    @classmethod
    def for_encoder(cls, spec: TensorSpec, overrides: Mapping[str, Any] | None = None) -> AudioSettings:
        """Settings for an encoder whose input 0 is `spec`: rank 3 -> "mel" `[B, n_mels, n_frames]`
        (B, n_frames upper bounds), rank 2 -> "raw" `[1, n_samples]`; `overrides` from the settings."""
        values = _overrides(overrides)
        base: dict[str, Any] = {"dtype": spec.dtype}
        if spec.rank == 3:
            batch, n_mels, n_frames = spec.shape
            base.update(kind="mel", n_mels=n_mels, n_frames=n_frames, batch_size=batch, max_chunks=batch)
            if values.get("n_mels", n_mels) != n_mels:
                raise ConfigError(
                    f"audio setting n_mels={values['n_mels']} does not match the audio encoder's input "
                    f"{spec.describe()} ({n_mels} mel bins); remove the setting"
                )
            if "chunk_length" in values:
                rate = values.get("sample_rate", cls.sample_rate)
                hop = values.get("hop_length", cls.hop_length)
                values["n_frames"] = _frames_of(values.pop("chunk_length"), rate, hop)
            if values.get("n_frames", n_frames) > n_frames:
                raise ConfigError(
                    f"audio setting n_frames={values['n_frames']} exceeds the audio encoder's input "
                    f"{spec.describe()} ({n_frames} frames at most)"
                )
            if values.get("batch_size", batch) > batch:
                raise ConfigError(
                    f"audio setting batch_size={values['batch_size']} exceeds the audio encoder's batch bound {batch}"
                )
        elif spec.rank == 2 and spec.shape[0] == 1:
            base.update(kind="raw", n_samples=spec.shape[1])
            if values.get("n_samples", spec.shape[1]) > spec.shape[1]:
                raise ConfigError(
                    f"audio setting n_samples={values['n_samples']} exceeds the audio encoder's input {spec.describe()}"
                )
            values.pop("chunk_length", None)
        else:
            raise ConfigError(
                f"the audio encoder's input {spec.describe()} is neither features [B, n_mels, n_frames] "
                "nor a waveform [1, n_samples]; mmcore-audio cannot feed it"
            )
        try:
            return dataclasses.replace(cls(), **{**base, **values})
        except TypeError as exc:
            raise ConfigError(f"invalid audio settings {values}: {exc}") from exc


def _frames_of(seconds: Any, sample_rate: Any, hop_length: Any) -> int:
    try:
        frames = float(seconds) * float(sample_rate) / float(hop_length)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"audio setting chunk_length must be a number of seconds, got {seconds!r}") from exc
    if frames < 1 or abs(frames - round(frames)) > 1e-6:
        raise ConfigError(
            f"audio setting chunk_length={seconds} s is not a whole number of {hop_length}-sample hops "
            f"at {sample_rate} Hz"
        )
    return round(frames)
