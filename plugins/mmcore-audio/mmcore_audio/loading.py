"""Turning an `AudioInput` into mono float32 samples at the model's sample rate."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from mmcore.errors import InvalidInputError
from mmcore_audio.inputs import AudioInput

__all__ = ["Waveform", "decode", "load_mono", "to_mono", "resample", "RESAMPLE_QUALITIES"]

#: soxr quality presets, lowest to highest.
RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Waveform:
    """Decoded samples `[samples, channels]` (float32) and their rate in Hz."""

    samples: FloatArray  # [S, C]
    sample_rate: float


def decode(item: AudioInput, where: str) -> Waveform:
    """The samples of `item` as `[samples, channels]` float32; `where` names the input in errors."""
    source = item.source
    if isinstance(source, str | os.PathLike):
        return _decode_file(os.fspath(source), item.sample_rate, where)
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise InvalidInputError(f"{where}: the audio bytes are empty; pass the bytes of a WAV, FLAC or OGG file")
        return _decode_file(io.BytesIO(bytes(source)), item.sample_rate, where)
    if hasattr(source, "read"):
        return _decode_file(source, item.sample_rate, where)
    if _is_array(source):
        return _from_array(source, item.sample_rate, where)
    raise InvalidInputError(
        f"{where}: AudioInput source of type {type(source).__name__} is not supported; pass a path, "
        "bytes, a binary file object, or a numpy array / torch tensor with sample_rate"
    )


def to_mono(samples: FloatArray) -> FloatArray:
    """The mean over channels of `[samples, channels]` audio, `[samples]`."""
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    mono: FloatArray = samples.mean(axis=1, dtype=np.float32)
    return mono


def resample(mono: FloatArray, from_rate: float, to_rate: float, quality: str = "HQ") -> FloatArray:
    """Band-limited (soxr) resampling of mono float32 samples; unchanged when the rates are equal."""
    if from_rate == to_rate:
        return mono
    out: FloatArray = soxr.resample(mono, from_rate, to_rate, quality=quality)
    return out


def load_mono(item: AudioInput, sample_rate: int, *, quality: str = "HQ", where: str = "audio input") -> FloatArray:
    """Mono float32 samples `[S]` of `item` at `sample_rate`: decoded, checked, mixed down, resampled.

    Raises `InvalidInputError` for undecodable, empty or non-finite audio. Silence is valid.
    """
    wave = decode(item, where)
    samples = wave.samples  # [S, C]
    if samples.shape[0] == 0:
        raise InvalidInputError(f"{where}: the audio has no samples (0 s long); pass a non-empty clip")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(np.argmin(finite.all(axis=1)))
        raise InvalidInputError(
            f"{where}: the audio has NaN or infinite samples (first at sample {bad}, "
            f"{bad / wave.sample_rate:.3f} s); pass finite samples in [-1, 1]"
        )
    return resample(to_mono(samples), wave.sample_rate, sample_rate, quality)


def _decode_file(source: Any, sample_rate: float | None, where: str) -> Waveform:
    try:
        data, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{where}: audio file {exc.filename or source!r} does not exist") from exc
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError, EOFError) as exc:
        name = source if isinstance(source, str) else type(source).__name__
        raise InvalidInputError(
            f"{where}: {name!s} is not readable audio ({exc}); pass a WAV, FLAC or OGG file "
            "(or samples as an array with sample_rate)"
        ) from exc
    if sample_rate is not None and float(sample_rate) != float(rate):
        raise InvalidInputError(
            f"{where}: sample_rate={sample_rate:g} was given but the file is sampled at {rate} Hz; "
            "leave sample_rate unset for files"
        )
    return Waveform(samples=data, sample_rate=float(rate))


def _is_array(source: Any) -> bool:
    return isinstance(source, np.ndarray) or type(source).__module__.split(".")[0] == "torch"


def _from_array(source: Any, sample_rate: float | None, where: str) -> Waveform:
    if sample_rate is None:
        raise InvalidInputError(
            f"{where}: audio samples given as an array need their rate; pass AudioInput(samples, sample_rate=16000)"
        )
    array = _as_numpy(source, where)
    if array.ndim == 1:
        samples = array[:, None]  # [S, 1]
    elif array.ndim == 2:
        # The smaller dimension holds the channels.
        samples = array.T if array.shape[0] < array.shape[1] else array  # [S, C]
    else:
        raise InvalidInputError(
            f"{where}: audio samples must be 1-D (mono) or 2-D ([channels, samples] or [samples, channels]), "
            f"got shape {list(array.shape)}"
        )
    return Waveform(samples=np.ascontiguousarray(_as_float(samples, where)), sample_rate=float(sample_rate))


def _as_numpy(source: Any, where: str) -> np.ndarray[Any, Any]:
    if isinstance(source, np.ndarray):
        return source
    import torch

    if not isinstance(source, torch.Tensor):
        raise InvalidInputError(f"{where}: unsupported array type {type(source).__name__}; pass numpy or torch")
    tensor = source.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


def _as_float(samples: np.ndarray[Any, Any], where: str) -> FloatArray:
    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind == "i":  # signed PCM: full scale is 2**(bits-1)
        scale = float(2 ** (8 * samples.dtype.itemsize - 1))
        return (samples.astype(np.float64) / scale).astype(np.float32)
    if samples.dtype == np.uint8:  # unsigned 8-bit PCM is centred on 128
        return ((samples.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    raise InvalidInputError(
        f"{where}: audio samples of dtype {samples.dtype} are not supported; pass float samples in [-1, 1] "
        "or signed integer PCM"
    )
