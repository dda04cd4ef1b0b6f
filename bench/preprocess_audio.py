"""Audio preprocessing speed: mmcore-audio against transformers' WhisperFeatureExtractor.

Cases (per item, median over `repeats` runs in one process, same input on both sides):

- `features_16k_mono_30s`: 30 s of 16 kHz mono samples -> 128-bin log-mel `[1, 128, 3000]`;
- `wav_44k1_stereo_30s`: a 30 s 44.1 kHz stereo WAV file -> the same features, full path (decode,
  mix down, soxr resample, features). The transformers side decodes with soundfile, averages the
  channels and resamples with soxr too, then extracts.
- `stft_numpy_vs_torch_30s`: mmcore-audio's numpy log-mel of one padded 30 s window against the
  torch implementation it replaced (`torch.fft.rfft` + `torch.matmul`, kept here as the baseline),
  the same input on both sides: does dropping torch cost speed?

Calls are interleaved and medians reported. mmcore-audio computes with numpy (no torch); transformers'
extractor uses torch when it is installed.

Run: `python bench/preprocess_audio.py [repeats] [threads]` (threads: torch intra-op threads, which only
the transformers side uses; default: torch's own setting).
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr
import torch
from mmcore_audio import AudioInput, AudioProcessor, AudioSettings, LogMelSpectrogram, MelConfig, mel_filter_bank

__all__ = ["run"]

logger = logging.getLogger(__name__)

_RATE = 16000
_SECONDS = 30


def _signal(seconds: float, rate: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    columns = [
        0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * rng.standard_normal(t.shape) for c in range(channels)
    ]
    samples = np.stack(columns, axis=1).astype(np.float32)  # [S, C]
    return samples[:, 0].copy() if channels == 1 else samples


def _timed_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000.0, result


def _case(name: str, ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> dict[str, Any]:
    ours_out, theirs_out = ours(), theirs()  # warm-up (filters, FFT plans)
    mine: list[float] = []
    other: list[float] = []
    for _ in range(repeats):  # interleaved, so load changes hit both sides
        mine.append(_timed_ms(ours)[0])
        other.append(_timed_ms(theirs)[0])
    ours_ms, theirs_ms = statistics.median(mine), statistics.median(other)
    ours_np = np.asarray(ours_out)
    return {
        "case": name,
        "mmcore_audio_ms": round(ours_ms, 3),
        "transformers_ms": round(theirs_ms, 3),
        "speedup": round(theirs_ms / ours_ms, 2),
        "max_abs_diff": float(np.abs(ours_np - np.asarray(theirs_out)).max()),
        "shape": list(ours_np.shape),
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
    }


def run(repeats: int, threads: int | None = None) -> list[dict[str, Any]]:
    """One result row per case: medians in ms, speed-up, and max abs difference of the features."""
    from transformers import WhisperFeatureExtractor

    if threads is not None:
        torch.set_num_threads(threads)

    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=_RATE)
    processor = AudioProcessor(AudioSettings(kind="mel", n_mels=128, n_frames=3000, max_chunks=1))

    def reference(mono: np.ndarray) -> np.ndarray:
        features: np.ndarray = extractor(mono, sampling_rate=_RATE, return_tensors="np")["input_features"]
        return features

    rows = []
    mono = _signal(_SECONDS, _RATE, 1)
    rows.append(
        _case(
            "features_16k_mono_30s",
            lambda: processor(AudioInput(mono, sample_rate=_RATE)),
            lambda: reference(mono),
            repeats,
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stereo_44k1.wav"
        soundfile.write(path, _signal(_SECONDS, 44100, 2), 44100, subtype="PCM_16")

        def theirs_from_file() -> np.ndarray:
            data, rate = soundfile.read(path, dtype="float32", always_2d=True)
            mixed = (data[:, 0] + data[:, 1]) / np.float32(2)  # the channel mean, computed fast
            return reference(soxr.resample(mixed, rate, _RATE, quality="HQ"))

        rows.append(_case("wav_44k1_stereo_30s", lambda: processor(AudioInput(path)), theirs_from_file, repeats))

    mel = LogMelSpectrogram(MelConfig(n_mels=128))
    padded = mel.padded_windows(mono, 1, _RATE * _SECONDS)  # [1, L + n_fft]
    # "transformers" column of this row: the former torch implementation
    rows.append(
        _case("stft_numpy_vs_torch_30s", lambda: mel.from_padded(padded), lambda: _torch_log_mel(padded), repeats)
    )
    return rows


def _torch_log_mel(padded: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """The torch log-mel mmcore-audio used before its numpy one: `[B, L + n_fft]` -> `[B, n_mels, T]`."""
    config = MelConfig(n_mels=n_mels)
    window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32)
    filters_t = torch.from_numpy(np.ascontiguousarray(mel_filter_bank(config).astype(np.float32).T))  # [M, F]
    with torch.no_grad():
        x = torch.from_numpy(padded)
        n_frames = (x.shape[-1] - config.n_fft) // config.hop_length
        frames = x.unfold(-1, config.n_fft, config.hop_length)[:, :n_frames]  # [B, T, n_fft]
        spectrum = torch.fft.rfft(frames * window, dim=-1)
        power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)
        log_mel = torch.matmul(filters_t, power.mT).clamp_(min=1e-10).log10_()  # [B, M, T]
        log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return log_mel.add_(4.0).div_(4.0).numpy()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
    for row in run(repeats, threads):
        logger.info("%s", row)
