"""Fixtures of the adapter tests: raw media files, ExecuTorch's LLaVA-style program, the C++ reference."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmcore.testing import ProgramSpec, VisionEncoderSpec, build_program


@pytest.fixture(scope="session")
def png_100x60(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-square 100x60 RGB PNG (needs resizing for every model)."""
    from PIL import Image

    path = tmp_path_factory.mktemp("media") / "picture.png"
    pixels = np.random.default_rng(3).integers(0, 256, size=(60, 100, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="session")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3.1-s stereo 16-bit WAV at 22.05 kHz (resampled and mixed down for every model)."""
    import soundfile

    rate = 22_050
    t = np.arange(int(rate * 3.1)) / rate
    left = 0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    right = 0.3 * np.sin(2 * np.pi * 440 * t) + np.random.default_rng(5).normal(0.0, 0.05, t.shape)
    path = tmp_path_factory.mktemp("media") / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def et_llava_pte(tiny_decoder: Any) -> Path:
    """ExecuTorch-LLaVA-style program: uint8 [3, H, W] image, start-position decoder, 512 positions (256 per call)."""
    decoder = dataclasses.replace(tiny_decoder, max_context_len=512, max_seq_len=256)
    return build_program(ProgramSpec(decoder=decoder, vision=VisionEncoderSpec(dtype="uint8", rank=3)))


@pytest.fixture
def encoder_calls() -> Any:
    """`encoder_calls(model)`: from then on, every media item `model`'s renderer encodes is appended
    (by identity) to the returned list."""

    def attach(model: Any) -> list[int]:
        calls: list[int] = []
        encode = model.renderer.context.encoder
        assert encode is not None

        def counting(span: Any, *, where: str) -> Any:
            calls.append(id(span.item))
            return encode(span, where=where)

        model.renderer.context = dataclasses.replace(model.renderer.context, encoder=counting)
        return calls

    return attach
