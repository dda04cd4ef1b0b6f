"""mmcore-audio: features equal transformers' WhisperFeatureExtractor; tokens equal ExecuTorch's C++ runner.

What the exactness tests compare: both sides get the same mono 16 kHz samples. For files and other
rates the reference decodes the file with soundfile (float32), averages the channels and resamples
with soxr at the plugin's quality ("HQ") before calling transformers, so the comparison covers
framing, padding, STFT, mel filters and log scaling, not the resampler itself. transformers is
called once per 30 s window (`padding="max_length"`), which is how mistral-common/Voxtral extract
long audio; `chunk_mode="joint"` is compared with transformers' own `VoxtralProcessor` path.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any, cast

import ml_dtypes
import mmcore_audio
import numpy as np
import pytest
import soundfile
import soxr
import torch
from mmcore_audio import AudioHandler, AudioInput, AudioProcessor, AudioSettings

from mmcore import GenerationConfig
from mmcore.errors import ConfigError, InvalidInputError
from mmcore.plugins import PluginManager
from mmcore.program import MethodSpec, TensorSpec
from mmcore.registry import PrefillContext
from mmcore.runner import MultimodalRunner
from mmcore.testing import AudioEncoderSpec, eager_model

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
WINDOW = 480000  # 30 s at 16 kHz
GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=12)


# --------------------------------------------------------------------------- helpers


def _audio(seconds: float, rate: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Tones plus noise, `[samples]` or `[samples, channels]` float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    columns = []
    for c in range(channels):
        tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.2 * np.sin(2 * np.pi * (1250 + 40 * c) * t)
        sweep = 0.1 * np.sin(2 * np.pi * (100 + 300 * t) * t)
        columns.append(tone + sweep + 0.05 * rng.standard_normal(t.shape))
    samples = np.stack(columns, axis=1).astype(np.float32)
    return samples[:, 0].copy() if channels == 1 else samples


def _reference_mono(samples: np.ndarray, rate: float) -> np.ndarray:
    """The documented input path: channel mean (float32), then soxr HQ to 16 kHz."""
    mono = samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000, quality="HQ")


def _hf_per_window(mono: np.ndarray, n_mels: int, window: int = WINDOW) -> np.ndarray:
    """transformers called once per window, each zero-padded to `window` samples: `[B, n_mels, T]`."""
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000)
    count = max(1, math.ceil(len(mono) / window))
    parts = [
        extractor(
            mono[i * window : (i + 1) * window],
            sampling_rate=16000,
            padding="max_length",
            max_length=window,
            return_tensors="np",
        )["input_features"][0]
        for i in range(count)
    ]
    return np.stack(parts)


def _mel_settings(n_mels: int = 128, n_frames: int = 3000, max_chunks: int = 3, **more: Any) -> AudioSettings:
    return AudioSettings(kind="mel", n_mels=n_mels, n_frames=n_frames, max_chunks=max_chunks, **more)


def _ours(item: AudioInput, settings: AudioSettings) -> np.ndarray:
    features = AudioProcessor(settings)(item)
    assert isinstance(features, np.ndarray) and features.flags.c_contiguous
    return features


def _assert_close(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    assert ours.dtype == np.float32
    diff = float(np.abs(ours - reference).max())
    assert diff <= TOLERANCE, f"max abs difference {diff}"


class _FakeProgram:
    """Just enough of `mmcore.Program` for `AudioHandler.preprocess`."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.spec = MethodSpec("audio_encoder", (TensorSpec(np.dtype(np.float32), shape),), ())

    def method_spec(self, name: str) -> MethodSpec:
        assert name == "audio_encoder"
        return self.spec


def _context(shape: tuple[int, ...] = (3, 128, 3000), **settings: Any) -> PrefillContext:
    return PrefillContext(program=cast(Any, _FakeProgram(shape)), tokenizer=None, settings=settings, index=3)


# --------------------------------------------------------------------------- features vs transformers


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize(("seconds", "windows"), [(12.5, 1), (30.0, 1), (41.3, 2), (60.0, 2), (75.2, 3)])
def test_features_equal_whisper_feature_extractor_per_window(n_mels: int, seconds: float, windows: int) -> None:
    mono = _audio(seconds, 16000)
    ours = _ours(AudioInput(mono, 16000), _mel_settings(n_mels))
    assert ours.shape == (windows, n_mels, 3000)
    _assert_close(ours, _hf_per_window(mono, n_mels))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_resampled_and_mixed_down_wav_files_match(tmp_path: Path, rate: int, channels: int) -> None:
    samples = _audio(33.0, rate, channels, seed=rate)
    path = tmp_path / "clip.wav"
    soundfile.write(path, samples, rate, subtype="FLOAT")
    decoded, _ = soundfile.read(path, dtype="float32", always_2d=True)

    ours = _ours(AudioInput(path), _mel_settings(80))
    assert ours.shape == (2, 80, 3000)
    _assert_close(ours, _hf_per_window(_reference_mono(decoded, rate), 80))


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")])
@pytest.mark.parametrize("form", ["path", "str", "bytes", "file"])
def test_file_formats_and_source_forms(tmp_path: Path, fmt: str, subtype: str, form: str) -> None:
    rate = 44100
    path = tmp_path / f"clip.{fmt.lower()}"
    soundfile.write(path, _audio(4.0, rate, 2, seed=1), rate, format=fmt, subtype=subtype)
    decoded, _ = soundfile.read(path, dtype="float32", always_2d=True)
    source: Any = {"path": path, "str": str(path), "bytes": path.read_bytes()}.get(form)
    with path.open("rb") as handle:
        ours = _ours(AudioInput(source if form != "file" else handle), _mel_settings(128))
    _assert_close(ours, _hf_per_window(_reference_mono(decoded, rate), 128))


@pytest.mark.parametrize(
    "layout", ["numpy_samples_channels", "numpy_channels_samples", "torch_channels_samples", "int16"]
)
def test_array_sources(layout: str) -> None:
    rate = 22050
    samples = _audio(9.0, rate, 2, seed=3)  # [S, 2]
    reference = _hf_per_window(_reference_mono(samples, rate), 128)
    if layout == "numpy_samples_channels":
        source: Any = samples
    elif layout == "numpy_channels_samples":
        source = samples.T.copy()
    elif layout == "torch_channels_samples":
        source = torch.from_numpy(samples.T.copy())
    else:
        pcm = np.round(samples * 32767).astype(np.int16)
        source = pcm
        reference = _hf_per_window(_reference_mono(pcm.astype(np.float32) / 32768, rate), 128)
    _assert_close(_ours(AudioInput(source, sample_rate=rate), _mel_settings(128)), reference)


def test_tiny_encoder_windows_match_transformers_with_a_short_max_length() -> None:
    # The test encoders take [B, 16, 40]: 40 frames = 6400-sample windows.
    mono = _audio(0.9, 16000, seed=5)
    ours = _ours(AudioInput(mono, 16000), _mel_settings(16, n_frames=40, max_chunks=4))
    assert ours.shape == (3, 16, 40)
    _assert_close(ours, _hf_per_window(mono, 16, window=6400))


def test_joint_chunk_mode_matches_transformers_voxtral_processor_path() -> None:
    mono = _audio(41.3, 16000, seed=6)
    extractor = transformers.WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    # What transformers' VoxtralProcessor._retrieve_input_features does: one call, padded to 30 s multiples.
    features = extractor(
        mono, sampling_rate=16000, padding=True, truncation=False, pad_to_multiple_of=WINDOW, return_tensors="pt"
    )["input_features"]
    reference = features.reshape(128, -1, 3000).transpose(0, 1).numpy()
    ours = _ours(AudioInput(mono, 16000), _mel_settings(128, chunk_mode="joint"))
    _assert_close(ours, reference)
    separate = _ours(AudioInput(mono, 16000), _mel_settings(128))
    assert float(np.abs(separate - ours).max()) > 1e-3  # the two modes really differ on long audio


def test_silence_is_valid_audio() -> None:
    silent = np.zeros(16000, dtype=np.float32)
    ours = _ours(AudioInput(silent, 16000), _mel_settings(80))
    _assert_close(ours, _hf_per_window(silent, 80))
    assert np.all(ours == np.float32(-1.5))  # log10(1e-10) = -10 -> (-10 + 4) / 4


def test_raw_waveform_is_resampled_and_padded() -> None:
    samples = _audio(0.05, 8000, 2, seed=9)  # 400 frames at 8 kHz -> 800 at 16 kHz
    settings = AudioSettings(kind="raw", n_samples=1600)
    waveform = AudioProcessor(settings)(AudioInput(samples, 8000))
    expected = _reference_mono(samples, 8000)
    assert waveform.shape == (1, 1600) and waveform.dtype == np.float32 and waveform.flags.c_contiguous
    assert np.array_equal(waveform[0, : len(expected)], expected)
    assert not waveform[0, len(expected) :].any()
    unpadded = AudioProcessor(AudioSettings(kind="raw", n_samples=1600, padding="none"))(AudioInput(samples, 8000))
    assert unpadded.shape == (1, len(expected))


# --------------------------------------------------------------------------- settings


def test_settings_come_from_the_encoder_shape_and_overrides() -> None:
    mel = AudioSettings.for_encoder(TensorSpec(np.dtype(np.float32), (4, 80, 3000)))
    assert (mel.kind, mel.n_mels, mel.n_frames, mel.batch_size, mel.max_chunks) == ("mel", 80, 3000, 4, 4)
    assert mel.max_seconds == 120.0
    raw = AudioSettings.for_encoder(TensorSpec(np.dtype(np.float32), (1, 1600)), {"truncate": True})
    assert (raw.kind, raw.n_samples, raw.truncate) == ("raw", 1600, True)
    tuned = AudioSettings.for_encoder(TensorSpec(BFLOAT16, (1, 128, 3000)), {"max_chunks": 5, "chunk_length": 10})
    assert (tuned.max_chunks, tuned.batch_size, tuned.n_frames, tuned.dtype) == (5, 1, 1000, BFLOAT16)
    features = AudioProcessor(tuned)(AudioInput(_audio(3.0, 16000), 16000))
    assert features.dtype == BFLOAT16 and features.shape == (1, 128, 1000) and features.flags.c_contiguous
    as_float = AudioProcessor(dataclasses.replace(tuned, dtype=np.dtype(np.float32)))(
        AudioInput(_audio(3.0, 16000), 16000)
    )
    assert np.array_equal(features, as_float.astype(BFLOAT16))


def test_sampling_rate_is_the_setting_and_sample_rate_is_deprecated() -> None:
    spec = TensorSpec(torch.float32, (1, 128, 3000))
    assert AudioSettings.for_encoder(spec, {"sampling_rate": 24000}).sample_rate == 24000
    with pytest.warns(DeprecationWarning, match="'sample_rate' is deprecated; use 'sampling_rate'"):
        assert AudioSettings.for_encoder(spec, {"sample_rate": 32000}).sample_rate == 32000


@pytest.mark.parametrize(
    ("shape", "overrides", "message"),
    [
        ((1, 128, 3000), {"n_mels": 80}, "n_mels=80"),
        ((1, 128, 3000), {"n_frames": 4000}, "n_frames=4000"),
        ((2, 128, 3000), {"batch_size": 3}, "batch_size=3"),
        ((1, 128, 3000), {"padding": "longest"}, "padding"),
        ((1, 128, 3000), {"resample_quality": "best"}, "resample_quality"),
        ((1, 128, 3000), {"chunk_length": 0.0001}, "chunk_length"),
        ((1, 1, 128, 3000), {}, "neither features"),
        ((1, 128, 3000), {"truncate": "yes"}, r"audio\.truncate: .*valid boolean"),
        ((1, 128, 3000), {"sampling_rate": "16k"}, r"audio\.sampling_rate: .*valid integer"),
        ((1, 128, 3000), {"hop_lenght": 160}, r"unknown key audio\.hop_lenght; accepted: .*hop_length"),
        ((1, 128, 3000), {"sampling_rate": 8000, "sample_rate": 8000}, "sampling_rate only"),
    ],
)
def test_bad_settings_raise_config_error(shape: tuple[int, ...], overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AudioSettings.for_encoder(TensorSpec(np.dtype(np.float32), shape), overrides)


# --------------------------------------------------------------------------- bad input


def _wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (AudioInput(np.zeros(0, dtype=np.float32), 16000), "no samples"),
        (AudioInput(np.zeros((2, 0), dtype=np.float32), 16000), "no samples"),
        (AudioInput(b""), "bytes are empty"),
        (AudioInput(_wav_bytes(np.zeros(0, dtype=np.float32))), "no samples"),
        (AudioInput(b"this is not audio at all, just some text " * 20), "not readable audio"),
        (AudioInput(Path("/nonexistent/clip.wav")), "does not exist"),
        (AudioInput(np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000), "NaN or infinite"),
        (AudioInput(np.array([[0.1, 0.2], [np.inf, 0.0]], dtype=np.float32), 16000), "NaN or infinite"),
        (AudioInput(np.zeros(100, dtype=np.float32)), "need their rate"),
        (AudioInput(np.zeros((2, 2, 100), dtype=np.float32), 16000), "1-D"),
        (AudioInput(np.zeros(100, dtype=np.complex64), 16000), "dtype complex64"),
        (AudioInput(_wav_bytes(np.zeros(100, dtype=np.float32)), sample_rate=8000), "16000 Hz"),
        (AudioInput(12345), "not supported"),
        (AudioInput(np.zeros(16000 * 91, dtype=np.float32), 16000), "at most 90 s"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_inputs_raise_invalid_input_error_naming_the_input(item: AudioInput, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        AudioHandler().preprocess(item, _context())
    assert "input 3 (AudioInput)" in str(info.value)


def test_bad_sample_rate_is_rejected_at_construction() -> None:
    for rate in (0, -16000, float("nan"), True):
        with pytest.raises(InvalidInputError, match="sample_rate"):
            AudioInput(np.zeros(10, dtype=np.float32), rate)


def test_truncate_keeps_the_first_windows() -> None:
    mono = _audio(95.0, 16000, seed=11)
    features = AudioHandler().preprocess(AudioInput(mono, 16000), _context(truncate=True))
    assert features.shape == (3, 128, 3000)
    _assert_close(features, _hf_per_window(mono[: 3 * WINDOW], 128))


def test_raw_encoder_rejects_long_audio_unless_truncating() -> None:
    long = AudioInput(np.zeros(2000, dtype=np.float32), 16000)
    with pytest.raises(InvalidInputError, match=r"input 3 \(AudioInput\).*at most 0.1 s"):
        AudioHandler().preprocess(long, _context((1, 1600)))
    assert AudioHandler().preprocess(long, _context((1, 1600), truncate=True)).shape == (1, 1600)


# --------------------------------------------------------------------------- plugin wiring


def test_plugin_is_found_through_its_entry_point() -> None:
    pm = PluginManager(allow=["audio"])
    handler = pm.modality_registry().handler_for(AudioInput(Path("x.wav")))
    assert handler.name == "audio" and pm.failures == []
    parsed = handler.parse_cli("clip.flac")  # type: ignore[attr-defined]
    assert parsed.source == Path("clip.flac") and parsed.sample_rate is None


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def audio_plugins(plugin_manager: PluginManager) -> PluginManager:
    plugin_manager.register(mmcore_audio, name="audio")
    return plugin_manager


def _cpp_inputs(before: str, features: np.ndarray, after: str) -> list[Any]:
    from executorch.extension.llm import runner as et

    return [et.make_text_input(before), et.make_audio_input(torch.from_numpy(features)), et.make_text_input(after)]


@pytest.mark.parametrize(("seconds", "windows"), [(0.3, 1), (0.7, 2)])
def test_mel_encoder_tokens_match_cpp_runner(
    make_spec, program_path, tokenizer_dir, audio_plugins, cpp, seconds: float, windows: int
) -> None:
    spec = make_spec(audio=AudioEncoderSpec(kind="mel"))  # [B <= 4, 16, 40]
    pte = program_path(spec)
    item = AudioInput(_audio(seconds, 22050, 2, seed=windows), sample_rate=22050)
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=audio_plugins)
    result = runner.generate(["the quick brown fox", item, "jumps over"], GREEDY)

    features = AudioHandler().preprocess(item, PrefillContext(program=runner.program, tokenizer=None))
    assert features.shape == (windows, 16, 40)
    reference = cpp.generate(cpp.multimodal(pte), _cpp_inputs("the quick brown fox", features, "jumps over"), 12)
    assert result.tokens == reference
    encode = runner.tokenizer.encode
    eager = eager_model(spec).greedy_generate(
        [
            ("tokens", encode("the quick brown fox")),
            ("audio", torch.from_numpy(features)),
            ("tokens", encode("jumps over")),
        ],
        12,
    )
    assert result.tokens == eager
    assert result.prompt_tokens == len(encode("the quick brown fox")) + windows * 10 + len(encode("jumps over"))


def test_static_batch_encoder_runs_window_by_window(make_spec, program_path, tokenizer_dir, audio_plugins) -> None:
    spec = make_spec(audio=AudioEncoderSpec(kind="mel", max_batch=1))  # static [1, 16, 40]
    item = AudioInput(_audio(0.7, 16000, seed=4), sample_rate=16000)
    runner = MultimodalRunner(
        program_path(spec), tokenizer_dir, plugin_manager=audio_plugins, modality_settings={"audio": {"max_chunks": 2}}
    )
    result = runner.generate(["the quick brown fox", item], GREEDY)
    features = AudioProcessor(_mel_settings(16, n_frames=40, max_chunks=2))(item)  # [2, 16, 40]
    encode = runner.tokenizer.encode
    eager = eager_model(spec).greedy_generate(
        [("tokens", encode("the quick brown fox")), ("audio", torch.from_numpy(features))], 12
    )
    assert result.tokens == eager


def test_raw_encoder_tokens_match_eager(make_spec, program_path, tokenizer_dir, audio_plugins) -> None:
    # ExecuTorch's C++ runner has no raw-audio prefill path: compare with the eager model only.
    spec = make_spec(audio=AudioEncoderSpec(kind="raw"))  # [1, 1600]
    samples = _audio(0.08, 48000, 2, seed=8)
    runner = MultimodalRunner(program_path(spec), tokenizer_dir, plugin_manager=audio_plugins)
    result = runner.generate(["the quick brown fox", AudioInput(samples, 48000), "jumps over"], GREEDY)

    waveform = torch.zeros(1, 1600)
    mono = _reference_mono(samples, 48000)
    waveform[0, : len(mono)] = torch.from_numpy(mono)
    encode = runner.tokenizer.encode
    eager = eager_model(spec).greedy_generate(
        [("tokens", encode("the quick brown fox")), ("audio", waveform), ("tokens", encode("jumps over"))], 12
    )
    assert result.tokens == eager


def test_runner_reports_bad_audio_without_touching_the_cache(
    make_spec, program_path, tokenizer_dir, audio_plugins
) -> None:
    spec = make_spec(audio=AudioEncoderSpec(kind="mel"))  # at most 4 windows of 0.4 s
    runner = MultimodalRunner(program_path(spec), tokenizer_dir, plugin_manager=audio_plugins)
    too_long = AudioInput(np.zeros(16000 * 2, dtype=np.float32), 16000)
    with pytest.raises(InvalidInputError, match=r"input 1 \(AudioInput\).*at most 1.6 s"):
        runner.generate(["the quick brown fox", too_long], GREEDY)
    with pytest.raises(InvalidInputError, match=r"input 0 \(AudioInput\).*not readable audio"):
        runner.generate([AudioInput(b"garbage" * 50), "x"], GREEDY)
    assert runner.pos == 0
    assert runner.generate(["the quick brown fox"], GREEDY).tokens


# --------------------------------------------------------------------------- numpy STFT vs torch's


def _torch_log_mel(padded: np.ndarray, n_mels: int) -> np.ndarray:
    """The torch log-mel mmcore-audio used before its numpy one (kept here as the reference)."""
    torch = pytest.importorskip("torch")
    config = mmcore_audio.MelConfig(n_mels=n_mels)
    window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32)
    filters_t = torch.from_numpy(np.ascontiguousarray(mmcore_audio.mel_filter_bank(config).astype(np.float32).T))
    x = torch.from_numpy(padded)
    n_frames = (x.shape[-1] - config.n_fft) // config.hop_length
    frames = x.unfold(-1, config.n_fft, config.hop_length)[:, :n_frames]  # [B, T, n_fft]
    spectrum = torch.fft.rfft(frames * window, dim=-1)
    power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)
    log_mel = torch.matmul(filters_t, power.mT).clamp_(min=1e-10).log10_()  # [B, M, T]
    log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - 8.0)
    return log_mel.add_(4.0).div_(4.0).numpy()


@pytest.mark.parametrize("n_mels", [16, 80, 128])
@pytest.mark.parametrize(("length", "count"), [(201, 1), (1000, 1), (6400, 3), (16000, 2), (123457, 1), (WINDOW, 2)])
def test_numpy_log_mel_matches_the_torch_one(n_mels: int, length: int, count: int) -> None:
    extractor = mmcore_audio.LogMelSpectrogram(mmcore_audio.MelConfig(n_mels=n_mels))
    samples = _audio(count * length / 16000 * 0.8, 16000, seed=length)  # the last window partly zero
    padded = extractor.padded_windows(samples, count, length)  # [B, L + n_fft]
    ours = extractor.from_padded(padded)
    assert ours.shape == (count, n_mels, length // 160) and ours.dtype == np.float32 and ours.flags.c_contiguous
    reference = _torch_log_mel(padded, n_mels)
    diff = np.abs(ours - reference)
    assert float(diff.max()) <= 5e-5 and float(diff.mean()) <= 2e-7, (float(diff.max()), float(diff.mean()))
    windows = padded[:, 200 : 200 + length]  # [B, L], the zero-filled windows
    np.testing.assert_array_equal(mmcore_audio.log_mel_spectrogram(windows, extractor.config), ours)
