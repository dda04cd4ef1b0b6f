"""Turning an `AudioInput` into mono float32 samples at the model's sample rate."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore.arrays import as_array, is_bfloat16, is_tensor
from mmcore.errors import InvalidInputError
from mmcore_audio.inputs import AudioInput

__all__ = ["Waveform", "decode", "load_mono", "to_mono", "resample", "RESAMPLE_QUALITIES"]

#: soxr quality presets, lowest to highest.
RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")

FloatArray = npt.NDArray[np.float32]

# File subtypes read as integers: (soundfile dtype, full scale). libsndfile left-aligns narrower PCM.
_PCM_READ: dict[str, tuple[str, float]] = {
    "PCM_S8": ("int16", 2.0**15),
    "PCM_U8": ("int16", 2.0**15),
    "PCM_16": ("int16", 2.0**15),
    "PCM_24": ("int32", 2.0**31),
    "PCM_32": ("int32", 2.0**31),
}


@dataclass(frozen=True, eq=False)
class Waveform:
    """Decoded samples `[samples, channels]` and their rate in Hz.

    `samples` are float32 in [-1, 1] (`full_scale` 1) or integer PCM read straight from a file
    (int16 or int32, `full_scale` 2**15 or 2**31), which `to_mono` scales.
    """

    samples: npt.NDArray[Any]  # [S, C]
    sample_rate: float
    full_scale: float = 1.0


def decode(item: AudioInput, where: str) -> Waveform:
    """The samples of `item` as `[samples, channels]` float32; `where` names the input in errors."""
    source = item.source
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.isfile(path):
            problem = "is a directory" if os.path.isdir(path) else "does not exist"
            raise InvalidInputError(f"{where}: audio file {path!r} {problem}; pass the path of a WAV, FLAC or OGG file")
        return _decode_file(path, item.sample_rate, where)
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


def to_mono(wave: Waveform) -> FloatArray:
    """The channel mean of the waveform's samples, as float32 in [-1, 1]: `[samples]`."""
    samples = wave.samples  # [S, C]
    channels = samples.shape[1]
    mono: FloatArray = samples[:, 0].astype(np.float32)  # [S], a copy
    for channel in range(1, channels):
        mono += samples[:, channel]
    divisor = channels * wave.full_scale
    if divisor != 1:
        mono /= np.float32(divisor)
    return mono


def resample(mono: FloatArray, from_rate: float, to_rate: float, quality: str = "HQ") -> FloatArray:
    """Band-limited (soxr) resampling of mono float32 samples; unchanged when the rates are equal."""
    if from_rate == to_rate:
        return mono
    import soxr  # imported when audio is first resampled

    out: FloatArray = soxr.resample(mono, from_rate, to_rate, quality=quality)
    return out


def load_mono(item: AudioInput, sample_rate: int, *, quality: str = "HQ", where: str = "audio input") -> FloatArray:
    """Mono float32 samples `[S]` of `item` at `sample_rate`: decoded, checked, mixed down, resampled.

    Raises `InvalidInputError` for undecodable, empty or non-finite audio. Silence is valid.
    """
    wave = decode(item, where)
    if wave.samples.size == 0:
        raise InvalidInputError(
            f"{where}: the audio has no samples (shape {list(wave.samples.shape)} as [samples, channels]); "
            "pass a non-empty clip"
        )
    mono = to_mono(wave)  # [S]; a NaN or inf in any channel stays non-finite in the mean
    if wave.samples.dtype.kind == "f":
        finite = np.isfinite(mono)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise InvalidInputError(
                f"{where}: the audio has NaN or infinite samples (first at sample {bad}, "
                f"{bad / wave.sample_rate:.3f} s); pass finite samples in [-1, 1]"
            )
    return resample(mono, wave.sample_rate, sample_rate, quality)


def _decode_file(source: Any, sample_rate: float | None, where: str) -> Waveform:
    import soundfile  # imported when a file is first decoded (libsndfile loads with it)

    try:
        with soundfile.SoundFile(source) as audio:
            rate = float(audio.samplerate)
            # Integer PCM is read as integers and scaled in `to_mono`: exact, and much faster than
            # libsndfile's own float conversion.
            dtype, full_scale = _PCM_READ.get(audio.subtype, ("float32", 1.0))
            data = audio.read(dtype=dtype, always_2d=True)  # [S, C]
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError, EOFError) as exc:
        name = source if isinstance(source, str) else type(source).__name__
        raise InvalidInputError(
            f"{where}: {name!s} is not readable audio ({exc}); pass a WAV, FLAC or OGG file "
            "(or samples as an array with sample_rate)"
        ) from exc
    if sample_rate is not None and float(sample_rate) != rate:
        raise InvalidInputError(
            f"{where}: sample_rate={sample_rate:g} was given but the file is sampled at {rate:g} Hz; "
            "leave sample_rate unset for files"
        )
    return Waveform(samples=data, sample_rate=rate, full_scale=full_scale)


def _is_array(source: Any) -> bool:
    return isinstance(source, np.ndarray) or is_tensor(source)


def _from_array(source: Any, sample_rate: float | None, where: str) -> Waveform:
    if sample_rate is None:
        raise InvalidInputError(
            f"{where}: audio samples given as an array need their rate; pass AudioInput(samples, sample_rate=16000)"
        )
    array = _as_numpy(source)
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
    return Waveform(samples=_as_float(samples, where), sample_rate=float(sample_rate))


def _as_numpy(source: Any) -> np.ndarray[Any, Any]:
    array = as_array(source)  # torch tensors converted, sharing memory
    return array.astype(np.float32) if is_bfloat16(array.dtype) or array.dtype == np.float16 else array


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
