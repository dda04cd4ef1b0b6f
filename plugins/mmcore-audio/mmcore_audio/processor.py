"""From mono samples to encoder input: windows of log-mel features, or one padded waveform."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore.errors import InvalidInputError
from mmcore_audio.inputs import AudioInput
from mmcore_audio.loading import load_mono
from mmcore_audio.mel import extractor
from mmcore_audio.settings import AudioSettings

__all__ = ["AudioProcessor"]

logger = logging.getLogger(__name__)


class AudioProcessor:
    """Turns audio into what the encoder takes under fixed `AudioSettings`: C-contiguous numpy arrays.

    "mel": the audio is cut into windows of `n_frames * hop_length` samples (the last one padded
    with zeros) and each becomes `[n_mels, n_frames]` features -> `[B, n_mels, n_frames]`.
    "raw": the samples, padded with zeros to `n_samples` -> `[1, n_samples]`.
    """

    def __init__(self, settings: AudioSettings) -> None:
        self.settings = settings
        self._mel = extractor(settings.mel_config()) if settings.kind == "mel" else None

    def __call__(self, item: AudioInput, *, where: str = "audio input") -> np.ndarray[Any, Any]:
        """Encoder input for `item`; `where` names the input in `InvalidInputError` messages."""
        s = self.settings
        samples = load_mono(item, s.sample_rate, quality=s.resample_quality, where=where)  # [S]
        return self.from_samples(samples, where=where)

    def from_samples(self, samples: npt.NDArray[np.float32], *, where: str = "audio input") -> np.ndarray[Any, Any]:
        """Encoder input for mono float32 samples `[S]` already at the model's sample rate."""
        s = self.settings
        if samples.shape[0] == 0:
            raise InvalidInputError(f"{where}: the audio has no samples (0 s long); pass a non-empty clip")
        samples = self._limited(samples, where)
        if self._mel is None:
            return self._waveform(samples)
        window = s.window_samples
        count = math.ceil(samples.shape[0] / window)
        if s.chunk_mode == "separate":
            features = self._mel.from_padded(self._mel.padded_windows(samples, count, window))  # [B, M, T]
        else:
            joint = self._mel.from_padded(self._mel.padded_windows(samples, 1, count * window))  # [1, M, B*T]
            features = joint.reshape(s.n_mels, count, s.n_frames).transpose(1, 0, 2)  # [B, M, T] (a view)
        return np.ascontiguousarray(features, dtype=s.dtype)  # [B, M, T]

    def _limited(self, samples: npt.NDArray[np.float32], where: str) -> npt.NDArray[np.float32]:
        s = self.settings
        limit = s.window_samples * (s.max_chunks if s.kind == "mel" else 1)
        if samples.shape[0] <= limit:
            return samples
        seconds = samples.shape[0] / s.sample_rate
        if s.truncate:
            logger.info("%s: audio of %.2f s truncated to the encoder's %.2f s", where, seconds, s.max_seconds)
            return samples[:limit]
        if s.kind == "mel":
            shape = f"{s.max_chunks} window(s) of {s.window_samples / s.sample_rate:g} s"
        else:
            shape = f"one waveform of {s.n_samples} samples"
        raise InvalidInputError(
            f"{where}: the audio is {seconds:.2f} s long but the audio encoder takes at most {s.max_seconds:g} s "
            f"({shape}); pass a shorter clip, or set the audio setting truncate=True to keep the first "
            f"{s.max_seconds:g} s"
        )

    def _waveform(self, samples: npt.NDArray[np.float32]) -> np.ndarray[Any, Any]:
        s = self.settings
        if s.padding == "max_length" and samples.shape[0] < s.n_samples:
            samples = np.pad(samples, (0, s.n_samples - samples.shape[0]))
        return np.ascontiguousarray(samples[None], dtype=s.dtype)  # [1, S]
