"""mmcore-image and mmcore-audio preprocess without torch: a subprocess where importing torch fails
(and which imports mmcore-text and mmcore-adapters too) makes image and audio encoder inputs, and
they equal the ones made here and transformers' processors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from mmcore_audio import AudioInput, AudioProcessor, AudioSettings
from mmcore_image import ImagePreprocessor, PreprocessSettings, split_image
from PIL import Image

from mmcore.testing import photo_like

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP = PreprocessSettings(
    size=(336, 336),
    resize_mode="shortest_edge_crop",
    resample="bicubic",
    do_normalize=True,
    image_mean=CLIP_MEAN,
    image_std=CLIP_STD,
)
WHISPER = AudioSettings(kind="mel", n_mels=128, n_frames=3000, max_chunks=2)

# Runs in the subprocess: torch cannot be imported there, so any torch import on the way fails.
CHILD = textwrap.dedent(
    """
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import of {name!r})")
            return None

    sys.meta_path.insert(0, NoTorch())

    import mmcore_adapters
    import mmcore_text
    import numpy as np
    from mmcore_audio import AudioHandler, AudioInput, AudioProcessor, AudioSettings
    from mmcore_image import ImageHandler, ImageInput, ImagePreprocessor, PreprocessSettings, split_image

    from mmcore.arrays import BFLOAT16
    from mmcore.program import MethodSpec, TensorSpec
    from mmcore.registry import PrefillContext

    image_path, wav_path, out_path = sys.argv[1:4]

    class Stub:
        def __init__(self, name, spec):
            self.name, self.spec = name, spec

        def method_spec(self, name):
            assert name == self.name
            return MethodSpec(name, (self.spec,), ())

    def ctx(name, dtype, shape, settings):
        program = Stub(name, TensorSpec(np.dtype(dtype) if dtype != "bfloat16" else BFLOAT16, shape))
        return PrefillContext(program=program, tokenizer=None, settings=settings, index=0)

    clip = PreprocessSettings(
        size=(336, 336), resize_mode="shortest_edge_crop", resample="bicubic", do_normalize=True,
        image_mean=(0.48145466, 0.4578275, 0.40821073), image_std=(0.26862954, 0.26130258, 0.27577711),
    )
    half, cut = {"image_mean": 0.5, "image_std": 0.5}, {"truncate": True}
    image, audio = ImageInput(image_path), AudioInput(wav_path)
    whisper = AudioSettings(kind="mel", n_mels=128, n_frames=3000, max_chunks=2)
    out = {
        "clip": ImagePreprocessor(clip)(image_path),  # [1, 3, 336, 336] float32
        "image_bf16": ImageHandler().preprocess(image, ctx("vision_encoder", "bfloat16", (3, 24, 32), half)),
        "image_u8": ImageHandler().preprocess(image, ctx("vision_encoder", "uint8", (1, 3, 32, 24), {})),
        "whisper": AudioProcessor(whisper)(audio),  # [2, 128, 3000] float32
        "audio_tiny": AudioHandler().preprocess(audio, ctx("audio_encoder", "float32", (4, 16, 40), cut)),
        "audio_raw": AudioHandler().preprocess(audio, ctx("audio_encoder", "float32", (1, 1600), cut)),
        "tiles": np.stack(split_image(image_path, longest_edge=128, tile=64).tiles),  # SmolVLM splitting
    }
    assert "torch" not in sys.modules, "torch was imported"
    for name, array in out.items():
        assert isinstance(array, np.ndarray) and array.flags.c_contiguous, name
    out["image_bf16"] = out["image_bf16"].view(np.uint16)  # np.savez cannot store ml_dtypes arrays
    np.savez(out_path, **out)
    """
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("no-torch")
    image = folder / "photo.png"
    photo_like(640, 480, seed=7).save(image)
    rate = 44100
    t = np.arange(round(40.0 * rate)) / rate  # 40 s: two 30 s windows
    left = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(1).standard_normal(t.shape)
    right = 0.2 * np.sin(2 * np.pi * 1250 * t)
    wav = folder / "clip.wav"
    soundfile.write(wav, np.stack([left, right], axis=1).astype(np.float32), rate, subtype="FLOAT")
    return image, wav


@pytest.fixture(scope="module")
def made_without_torch(media: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    image, wav = media
    out = tmp_path_factory.mktemp("no-torch-out") / "arrays.npz"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(image), str(wav), str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as arrays:
        return {name: arrays[name] for name in arrays.files}


def test_shapes_and_dtypes_without_torch(made_without_torch: dict[str, np.ndarray]) -> None:
    made = made_without_torch
    assert made["clip"].shape == (1, 3, 336, 336) and made["clip"].dtype == np.float32
    assert made["image_bf16"].shape == (3, 24, 32)  # bfloat16 bits
    assert made["image_u8"].shape == (1, 3, 32, 24) and made["image_u8"].dtype == np.uint8
    assert made["whisper"].shape == (2, 128, 3000) and made["whisper"].dtype == np.float32
    assert made["audio_tiny"].shape == (4, 16, 40) and made["audio_raw"].shape == (1, 1600)
    assert made["tiles"].shape == (5, 64, 64, 3)  # 640x480 -> 128x96 -> 128x128: 2x2 crops + the global image


def test_arrays_equal_the_ones_made_with_torch_loaded(
    made_without_torch: dict[str, np.ndarray], media: tuple[Path, Path]
) -> None:
    image, wav = media
    assert np.array_equal(made_without_torch["clip"], ImagePreprocessor(CLIP)(image))
    assert np.array_equal(made_without_torch["whisper"], AudioProcessor(WHISPER)(AudioInput(wav)))
    assert np.array_equal(made_without_torch["tiles"], np.stack(split_image(image, longest_edge=128, tile=64).tiles))


def test_arrays_equal_transformers_processors(
    made_without_torch: dict[str, np.ndarray], media: tuple[Path, Path]
) -> None:
    transformers = pytest.importorskip("transformers")
    image, wav = media
    clip = transformers.CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    expected = clip(Image.open(image).convert("RGB"), return_tensors="np")["pixel_values"]  # [1, 3, 336, 336]
    assert float(np.abs(made_without_torch["clip"] - expected).max()) <= 1e-5  # as in test_image_plugin

    samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    mono = soxr.resample(samples.mean(axis=1, dtype=np.float32), rate, 16000, quality="HQ")
    extractor = transformers.WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    window = 480000
    reference = np.stack(
        [
            extractor(
                mono[i * window : (i + 1) * window], sampling_rate=16000, padding="max_length", return_tensors="np"
            )["input_features"][0]
            for i in range(2)
        ]
    )  # [2, 128, 3000]
    assert float(np.abs(made_without_torch["whisper"] - reference).max()) <= 1e-4  # as in test_audio_plugin
