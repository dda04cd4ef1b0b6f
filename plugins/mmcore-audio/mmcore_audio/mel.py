"""Whisper-style log-mel spectrograms (the numerics of transformers' `WhisperFeatureExtractor`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from mmcore.errors import ConfigError

__all__ = ["MelConfig", "LogMelSpectrogram", "extractor", "log_mel_spectrogram", "mel_filter_bank"]

_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0  # log10 units kept below each window's peak

# Slaney mel scale: linear below 1 kHz, logarithmic above.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_MELS_PER_NEPER = 27.0 / math.log(6.4)


@dataclass(frozen=True)
class MelConfig:
    """STFT and mel filter parameters (Whisper's by default)."""

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 8000.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"audio setting '{name}' must be a positive integer, got {value!r}")
        if not 0.0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError(
                f"audio settings need 0 <= f_min < f_max <= sample_rate / 2 = {self.sample_rate / 2:g}, "
                f"got f_min={self.f_min:g}, f_max={self.f_max:g}"
            )

    @property
    def n_freqs(self) -> int:
        """Frequency bins of one real FFT frame."""
        return self.n_fft // 2 + 1


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = hz / _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) * _LOG_MELS_PER_NEPER
    return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = mel * _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_HZ * np.exp((np.maximum(mel, _BREAK_MEL) - _BREAK_MEL) / _LOG_MELS_PER_NEPER)
    return np.where(mel >= _BREAK_MEL, logarithmic, linear)


def mel_filter_bank(config: MelConfig) -> npt.NDArray[np.float64]:
    """Slaney-scale, Slaney-normalised triangular filters `[n_freqs, n_mels]` (float64)."""
    fft_hz = np.linspace(0.0, config.sample_rate // 2, config.n_freqs)  # [F]
    low, high = _hz_to_mel(np.array([config.f_min, config.f_max], dtype=np.float64))
    edges_mel = np.linspace(float(low), float(high), config.n_mels + 2)  # [M + 2]
    edges_hz = _mel_to_hz(edges_mel)  # [M + 2]
    left, centre, right = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]  # [M] each
    rising = (fft_hz[:, None] - left) / (centre - left)  # [F, M]
    falling = (right - fft_hz[:, None]) / (right - centre)  # [F, M]
    filters = np.maximum(0.0, np.minimum(rising, falling))  # [F, M]
    filters *= 2.0 / (right - left)  # equal area per filter
    return filters


class LogMelSpectrogram:
    """Log-mel features of fixed-length windows, each window normalised on its own.

    Per window: centred STFT (reflect padding, periodic Hann, power 2; the last frame dropped), mel
    filters, `log10(max(x, 1e-10))`, floor at the window's peak minus 8, then `(x + 4) / 4`. Each
    window of L samples gives `L // hop_length` frames.
    """

    def __init__(self, config: MelConfig) -> None:
        self.config = config
        self.window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32)  # [n_fft]
        filters = mel_filter_bank(config).astype(np.float32)  # [F, M]
        self.filters_t = torch.from_numpy(np.ascontiguousarray(filters.T))  # [M, F]

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        """`windows: [B, L]` float32 -> features `[B, n_mels, L // hop_length]` float32."""
        samples = windows.detach().to(torch.float32).cpu().numpy()
        return self.from_padded(self.padded_windows(samples.reshape(-1), samples.shape[0], samples.shape[1]))

    def padded_windows(self, samples: npt.NDArray[np.float32], count: int, length: int) -> torch.Tensor:
        """`samples` cut into `count` windows of `length` (zero-filled past the end), each with the
        STFT's reflect margins: `[count, length + n_fft]`."""
        half = self.config.n_fft // 2
        if length <= half:
            raise ConfigError(
                f"audio windows of {length} samples are too short for n_fft={self.config.n_fft}; "
                f"a window needs more than {half} samples"
            )
        padded = np.zeros((count, length + 2 * half), dtype=np.float32)  # [B, L + n_fft]
        used = min(samples.shape[0], count * length)
        for index in range(count):
            piece = samples[index * length : min((index + 1) * length, used)]
            padded[index, half : half + piece.shape[0]] = piece
        padded[:, :half] = padded[:, 2 * half : half : -1]  # x[half], ..., x[1]
        padded[:, half + length :] = padded[:, half + length - 2 : length - 2 : -1]  # x[L-2], ..., x[L-1-half]
        return torch.from_numpy(padded)

    def from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Features `[B, n_mels, T]` of reflect-padded windows `[B, L + n_fft]` (T = L // hop_length)."""
        cfg = self.config
        n_frames = (padded.shape[-1] - cfg.n_fft) // cfg.hop_length
        frames = padded.unfold(-1, cfg.n_fft, cfg.hop_length)[:, :n_frames]  # [B, T, n_fft]
        spectrum = torch.fft.rfft(frames * self.window, dim=-1)  # [B, T, F] complex
        power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)  # [B, T, F]
        mel = torch.matmul(self.filters_t, power.mT)  # [B, M, T]
        log_mel = mel.clamp_(min=_LOG_FLOOR).log10_()  # [B, M, T]
        peak = log_mel.amax(dim=(1, 2), keepdim=True)  # [B, 1, 1]
        log_mel = torch.maximum(log_mel, peak - _DYNAMIC_RANGE)
        return log_mel.add_(4.0).div_(4.0)


@functools.lru_cache(maxsize=16)
def _extractor(config: MelConfig) -> LogMelSpectrogram:
    return LogMelSpectrogram(config)


def log_mel_spectrogram(windows: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """`windows: [B, L]` -> `[B, n_mels, L // hop_length]`, with window and filters built once per config."""
    with torch.no_grad():
        return _extractor(config)(windows)


def extractor(config: MelConfig) -> LogMelSpectrogram:
    """The shared extractor of `config` (window and filters built once)."""
    return _extractor(config)
