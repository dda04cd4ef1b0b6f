"""Whisper-style log-mel features in numpy, matching what mmcore-audio feeds the audio encoder."""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from mmcore.demo_model.constants import AUDIO_SAMPLE_RATE, F_MAX, F_MIN, HOP_LENGTH, N_FFT, N_FRAMES, N_MELS

__all__ = ["hann_window", "log_mel", "mel_filter_bank"]

FloatArray = npt.NDArray[np.float32]

_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0  # log10 units kept below the window's maximum
_HZ_PER_MEL = 200.0 / 3.0  # Slaney: linear below 1 kHz ...
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _HZ_PER_MEL
_MELS_PER_NEPER = 27.0 / math.log(6.4)  # ... logarithmic above


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    log_part = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) * _MELS_PER_NEPER
    return np.where(hz < _BREAK_HZ, hz / _HZ_PER_MEL, log_part)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    log_part = _BREAK_HZ * np.exp((np.maximum(mel, _BREAK_MEL) - _BREAK_MEL) / _MELS_PER_NEPER)
    return np.where(mel < _BREAK_MEL, mel * _HZ_PER_MEL, log_part)


@functools.cache
def mel_filter_bank(
    sample_rate: int = AUDIO_SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> FloatArray:
    """Slaney-scale, area-normalised triangular mel filters ``[n_fft // 2 + 1, n_mels]``."""
    bins_hz = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)  # [F]
    mel_low, mel_high = _hz_to_mel(np.array([f_min, f_max], dtype=np.float64))
    edges = _mel_to_hz(np.linspace(float(mel_low), float(mel_high), n_mels + 2))  # [M+2]
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # [M] each
    rising = (bins_hz[:, None] - lower) / (centre - lower)  # [F, M]
    falling = (upper - bins_hz[:, None]) / (upper - centre)  # [F, M]
    filters = np.clip(np.minimum(rising, falling), 0.0, None) * (2.0 / (upper - lower))  # [F, M]
    return filters.astype(np.float32)


@functools.cache
def hann_window(n_fft: int = N_FFT) -> FloatArray:
    """Periodic Hann window ``[n_fft]``."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _active_frames(window: FloatArray, n_frames: int) -> int:
    """How many leading frames of ``window`` (one row, zero-padded at the end) can see a non-zero sample."""
    nonzero = np.flatnonzero(window)
    if nonzero.size == 0:
        return 0
    return min(n_frames, -(-(int(nonzero[-1]) + 1 + N_FFT // 2) // HOP_LENGTH))


def log_mel(samples: FloatArray, n_frames: int = N_FRAMES) -> FloatArray:
    """Features ``[B, N_MELS, n_frames]`` of mono 16 kHz ``samples: [B, S]`` (each row zero-padded or cut to
    ``n_frames * HOP_LENGTH`` samples and normalised by its own maximum)."""
    length = n_frames * HOP_LENGTH
    window = np.zeros((samples.shape[0], length), dtype=np.float32)  # [B, L]
    used = min(length, samples.shape[1])
    window[:, :used] = samples[:, :used]
    half = N_FFT // 2
    padded = np.pad(window, ((0, 0), (half, half)), mode="reflect")  # [B, L + N_FFT]
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::HOP_LENGTH][:, :n_frames]
    mel = np.zeros((window.shape[0], n_frames, N_MELS), dtype=np.float32)  # [B, T, M]
    for row in range(window.shape[0]):
        active = _active_frames(window[row], n_frames)  # later frames see only zeros: mel power 0
        spectrum = np.fft.rfft(frames[row, :active] * hann_window(), axis=-1)  # [T', F] complex
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)  # [T', F]
        mel[row, :active] = power @ mel_filter_bank()  # [T', M]
    mel = mel.transpose(0, 2, 1)  # [B, M, T]
    logs = np.log10(np.maximum(mel, _LOG_FLOOR))  # [B, M, T]
    logs = np.maximum(logs, logs.max(axis=(1, 2), keepdims=True) - _DYNAMIC_RANGE)
    out: FloatArray = np.ascontiguousarray((logs + 4.0) / 4.0, dtype=np.float32)
    return out
