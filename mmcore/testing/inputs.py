"""Deterministic example media: tensors for the test encoders, and photo-like images."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmcore.testing.specs import AudioEncoderSpec, VisionEncoderSpec

__all__ = ["photo_like", "sample_audio", "sample_image"]


def sample_image(spec: VisionEncoderSpec, seed: int = 0) -> Tensor:
    """A random image in the encoder's input shape and dtype (uint8 in [0, 255], else [0, 1])."""
    gen = torch.Generator().manual_seed(seed)
    if spec.dtype == "uint8":
        return torch.randint(0, 256, spec.input_shape, generator=gen, dtype=torch.uint8)
    image = torch.rand(spec.input_shape, generator=gen)  # [1, 3, H, W] or [3, H, W]
    return image.to(torch.bfloat16) if spec.dtype == "bfloat16" else image


def sample_audio(spec: AudioEncoderSpec, batch: int = 1, seed: int = 0) -> Tensor:
    """Random features ``[batch, n_bins, n_frames]`` ("mel") or a waveform ``[1, n_samples]`` ("raw")."""
    if spec.kind == "raw" and batch != 1:
        raise ValueError(f"a raw audio encoder takes one waveform, got batch={batch}")
    if not 1 <= batch <= spec.max_batch:
        raise ValueError(f"batch must be in [1, {spec.max_batch}], got {batch}")
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(spec.input_shape(batch), generator=gen)


def photo_like(width: int, height: int, seed: int = 0) -> Any:
    """A deterministic photo-like RGB `PIL.Image.Image`: gradients, shapes, edges and noise (needs Pillow)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            128 + 100 * np.sin(x / max(width, 1) * 6.0 + seed),
            128 + 100 * np.cos(y / max(height, 1) * 5.0),
            255 * (x + y) / max(width + height, 1),
        ],
        axis=-1,
    )  # [H, W, 3]
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    noisy = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
