"""Deterministic example media tensors for the test encoders."""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.testing.specs import AudioEncoderSpec, VisionEncoderSpec

__all__ = ["sample_audio", "sample_image"]


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
