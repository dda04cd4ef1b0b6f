"""Synthetic tones and the audio preprocessing the audio encoder expects."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from mmcore.demo_model.constants import AUDIO_SAMPLE_RATE, HOP_LENGTH, N_FRAMES, PITCH_RANGES_HZ, Pitch
from mmcore.demo_model.mel import log_mel

__all__ = ["Clip", "ToneStyle", "preprocess_audio", "preprocess_clips", "synth_tone"]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Clip:
    """Decoded audio: ``samples: [S, C]`` float32 in [-1, 1] at ``sample_rate`` Hz."""

    samples: FloatArray  # [S, C]
    sample_rate: int


@dataclass(frozen=True)
class ToneStyle:
    """Ranges a tone generator draws from.

    Fields:
        sample_rates: rates to choose from (those whose Nyquist frequency is too low for the
            tone are skipped); the first is picked with probability ``first_rate_probability``.
        duration: clip length range in seconds.
        range_margin: widens each pitch range by this factor on both sides (1 = exact ranges).
        amplitude: peak amplitude range of the tone.
        snr_db: signal-to-noise ratio range of added white noise, in dB.
        stereo_probability: chance of a two-channel clip (channel gains and noise differ).
        fade_probability: chance of short fade-in/out ramps.
    """

    sample_rates: tuple[int, ...] = (16000, 8000, 11025, 22050, 24000, 32000, 44100, 48000)
    first_rate_probability: float = 0.7
    duration: tuple[float, float] = (0.45, 3.0)
    range_margin: float = 1.06
    amplitude: tuple[float, float] = (0.05, 0.95)
    snr_db: tuple[float, float] = (8.0, 45.0)
    stereo_probability: float = 0.3
    fade_probability: float = 0.5


def _frequency(rng: np.random.Generator, pitch: Pitch, margin: float) -> float:
    """A log-uniform frequency of the pitch class."""
    low, high = PITCH_RANGES_HZ[pitch]
    return math.exp(rng.uniform(math.log(low / margin), math.log(high * margin)))


def _sample_rate(rng: np.random.Generator, frequency: float, style: ToneStyle) -> int:
    """A sample rate able to carry ``frequency`` (below 0.45 of the rate)."""
    usable = [r for r in style.sample_rates if frequency < 0.45 * r]
    if usable[0] == style.sample_rates[0] and rng.random() < style.first_rate_probability:
        return usable[0]
    return usable[int(rng.integers(len(usable)))]


def synth_tone(rng: np.random.Generator, pitch: Pitch, style: ToneStyle) -> Clip:
    """A pure tone of the ``pitch`` class with white noise, mono or stereo."""
    frequency = _frequency(rng, pitch, style.range_margin)
    rate = _sample_rate(rng, frequency, style)
    count = max(1, int(rng.uniform(*style.duration) * rate))
    phase = np.arange(count, dtype=np.float64) * (2 * np.pi * frequency / rate) + rng.uniform(0, 2 * np.pi)  # [S]
    tone = np.sin(phase.astype(np.float32))  # [S]
    if rng.random() < style.fade_probability:
        ramp = min(count // 2, max(1, int(rng.uniform(0.002, 0.05) * rate)))
        envelope = np.ones(count, dtype=np.float32)
        envelope[:ramp] = np.linspace(0, 1, ramp, dtype=np.float32)
        envelope[count - ramp :] = np.linspace(1, 0, ramp, dtype=np.float32)
        tone *= envelope
    channels = 2 if rng.random() < style.stereo_probability else 1
    amplitude = rng.uniform(*style.amplitude)
    noise_std = amplitude / math.sqrt(2) / 10 ** (rng.uniform(*style.snr_db) / 20)
    gains = amplitude * rng.uniform(0.6, 1.0, size=channels) if channels > 1 else np.array([amplitude])
    noise = rng.standard_normal((count, channels), dtype=np.float32) * np.float32(noise_std)  # [S, C]
    samples = np.clip(tone[:, None] * gains[None, :].astype(np.float32) + noise, -1.0, 1.0)  # [S, C]
    return Clip(samples=samples, sample_rate=rate)


def _mono_16k(clip: Clip) -> FloatArray:
    """Mean over channels, resampled (soxr HQ) to the model's rate and cut to one window: ``[S']``."""
    mono = clip.samples.mean(axis=1, dtype=np.float32) if clip.samples.shape[1] > 1 else clip.samples[:, 0]
    if clip.sample_rate != AUDIO_SAMPLE_RATE:
        mono = soxr.resample(mono, clip.sample_rate, AUDIO_SAMPLE_RATE, quality="HQ")
    out: FloatArray = np.ascontiguousarray(mono[: N_FRAMES * HOP_LENGTH], dtype=np.float32)
    return out


def preprocess_clips(clips: list[Clip]) -> FloatArray:
    """Audio-encoder inputs ``[B, N_MELS, N_FRAMES]`` of clips (each zero-padded to one 3 s window)."""
    batch = np.zeros((len(clips), N_FRAMES * HOP_LENGTH), dtype=np.float32)  # [B, L]
    for index, clip in enumerate(clips):
        mono = _mono_16k(clip)
        batch[index, : mono.shape[0]] = mono
    return log_mel(batch)


def preprocess_audio(clip: Clip) -> FloatArray:
    """Audio-encoder input ``[1, N_MELS, N_FRAMES]`` of one clip."""
    return preprocess_clips([clip])
