"""Whisper-style log-mel spectrograms (the numerics of transformers' `WhisperFeatureExtractor`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mmcore.errors import ConfigError

__all__ = ["MelConfig", "LogMelSpectrogram", "extractor", "hann_window", "log_mel_spectrogram", "mel_filter_bank"]

FloatArray = npt.NDArray[np.float32]

_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0  # log10 units kept below each window's peak
_FRAME_BLOCK = 256  # STFT frames transformed per numpy call (fastest measured: the block stays in cache)

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
    window of L samples gives `L // hop_length` frames. Inputs and outputs are float32 numpy arrays.
    """

    def __init__(self, config: MelConfig) -> None:
        self.config = config
        self.window = hann_window(config.n_fft)  # [n_fft] float32
        self._window64 = self.window.astype(np.float64)  # the same values, for the float64 FFT
        self.filters = mel_filter_bank(config).astype(np.float32)  # [F, M]

    def __call__(self, windows: npt.ArrayLike) -> FloatArray:
        """`windows: [B, L]` float32 (numpy, or anything `np.asarray` takes) -> `[B, n_mels, L // hop_length]`."""
        samples = np.asarray(windows, dtype=np.float32)
        if samples.ndim != 2:
            raise ConfigError(f"log-mel windows must be [B, L], got shape {list(samples.shape)}")
        return self.from_padded(self.padded_windows(samples.reshape(-1), samples.shape[0], samples.shape[1]))

    def padded_windows(self, samples: FloatArray, count: int, length: int) -> FloatArray:
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
        return padded

    def from_padded(self, padded: FloatArray) -> FloatArray:
        """Features `[B, n_mels, T]` float32 of reflect-padded windows `[B, L + n_fft]` (T = L // hop_length).

        The FFT runs in float64 (numpy's float64 FFT is faster than its float32 one) over blocks of
        frames that stay in cache, the mel filters in float32 over all frames at once, the logarithm
        in float64.
        """
        cfg = self.config
        count, n_frames = padded.shape[0], (padded.shape[-1] - cfg.n_fft) // cfg.hop_length
        strided = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft, axis=-1)  # [B, L + 1, n_fft] (a view)
        frames = strided[:, : n_frames * cfg.hop_length : cfg.hop_length]  # [B, T, n_fft] (a view)
        power = np.empty((count, n_frames, cfg.n_freqs), dtype=np.float32)  # [B, T, F]
        for index in range(count):
            for start in range(0, n_frames, _FRAME_BLOCK):
                block = slice(start, start + _FRAME_BLOCK)
                spectrum = np.fft.rfft(frames[index, block] * self._window64, axis=-1)  # [t, F] complex128
                squared = np.square(spectrum.real)  # [t, F] float64
                squared += np.square(spectrum.imag)
                power[index, block] = squared
        mel = np.matmul(power, self.filters)  # [B, T, M] float32
        np.maximum(mel, np.float32(_LOG_FLOOR), out=mel)
        # in float64, rounded once: numpy's float32 log10 can be an ulp off (log10(1e-10) != -10)
        log_mel = np.log10(mel, out=mel, dtype=np.float64)  # [B, T, M]
        peak = log_mel.max(axis=(1, 2), keepdims=True)  # [B, 1, 1]
        np.maximum(log_mel, peak - np.float32(_DYNAMIC_RANGE), out=log_mel)
        log_mel += np.float32(4.0)
        log_mel /= np.float32(4.0)
        return np.ascontiguousarray(log_mel.transpose(0, 2, 1), dtype=np.float32)  # [B, M, T]


def hann_window(n_fft: int) -> FloatArray:
    """The periodic Hann window of `n_fft` samples, float32 (`torch.hann_window(n_fft, periodic=True)`)."""
    angle = np.arange(n_fft, dtype=np.float32) * np.float32(2.0 * math.pi / n_fft)  # [n_fft], as torch: float32
    cosine = np.cos(angle.astype(np.float64)).astype(np.float32)  # correctly rounded
    window: FloatArray = cosine * np.float32(-0.5) + np.float32(0.5)
    return window


@functools.lru_cache(maxsize=16)
def _extractor(config: MelConfig) -> LogMelSpectrogram:
    return LogMelSpectrogram(config)


def log_mel_spectrogram(windows: npt.ArrayLike, config: MelConfig) -> FloatArray:
    """`windows: [B, L]` -> `[B, n_mels, L // hop_length]` float32, with window and filters built once per config."""
    return _extractor(config)(windows)


def extractor(config: MelConfig) -> LogMelSpectrogram:
    """The shared extractor of `config` (window and filters built once)."""
    return _extractor(config)
