"""The program's compute methods (ExecuTorch's multimodal contract) and their export inputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim

from mmcore.demo_model.model import DemoModel

__all__ = ["AudioEncoderMethod", "TextDecoderMethod", "TokenEmbeddingMethod", "VisionEncoderMethod", "method_modules"]

#: Example sequence length; above 1 so export keeps the sequence dim dynamic.
_EXAMPLE_T = 4


class TokenEmbeddingMethod(nn.Module):
    """``token_embedding``: ``tokens [1, T]`` int64 -> ``[1, T, D]``."""

    def __init__(self, model: DemoModel) -> None:
        super().__init__()
        self.embedding = model.tok_embeddings

    def forward(self, tokens: Tensor) -> Tensor:
        out: Tensor = self.embedding(tokens)
        return out


class TextDecoderMethod(nn.Module):
    """``text_decoder``: ``(embeds [1, T, D], start_pos [1])`` -> last-position logits ``[1, V]`` (KV cache)."""

    def __init__(self, model: DemoModel) -> None:
        super().__init__()
        self.body = model.body

    def forward(self, embeds: Tensor, start_pos: Tensor) -> Tensor:
        pos = start_pos[0] + torch.arange(embeds.shape[1], dtype=torch.int64)  # [T]
        out: Tensor = self.body(embeds, pos, last_only=True)
        return out


class VisionEncoderMethod(nn.Module):
    """``vision_encoder``: pixels ``[1, 3, S, S]`` float32 in [0, 1] -> ``[1, K_img, D]``."""

    def __init__(self, model: DemoModel) -> None:
        super().__init__()
        self.vision = model.vision

    def forward(self, pixels: Tensor) -> Tensor:
        out: Tensor = self.vision(pixels)
        return out


class AudioEncoderMethod(nn.Module):
    """``audio_encoder``: log-mel ``[B, n_mels, n_frames]`` float32 -> ``[1, B * K_aud, D]``."""

    def __init__(self, model: DemoModel) -> None:
        super().__init__()
        self.audio = model.audio

    def forward(self, mels: Tensor) -> Tensor:
        tokens: Tensor = self.audio(mels)  # [B, K, D]
        return tokens.reshape(1, -1, tokens.shape[-1])  # [1, B*K, D]


def method_modules(model: DemoModel) -> dict[str, tuple[nn.Module, tuple[Tensor, ...], Any]]:
    """Each method's module, example inputs and ``dynamic_shapes`` (``model`` must have a KV cache)."""
    c = model.config
    seq = Dim("seq", min=1, max=c.max_seq_len)
    tokens = torch.zeros(1, _EXAMPLE_T, dtype=torch.int64)  # [1, T]
    embeds = torch.zeros(1, _EXAMPLE_T, c.dim)  # [1, T, D]
    start = torch.zeros(1, dtype=torch.int64)  # [1]
    pixels = torch.zeros(1, 3, c.image_size, c.image_size)  # [1, 3, S, S]
    mels = torch.zeros(1, c.n_mels, c.n_frames)  # [1, M, T]
    return {
        "token_embedding": (TokenEmbeddingMethod(model), (tokens,), ({1: seq},)),
        "text_decoder": (TextDecoderMethod(model), (embeds, start), ({1: seq}, None)),
        "vision_encoder": (VisionEncoderMethod(model), (pixels,), None),
        "audio_encoder": (AudioEncoderMethod(model), (mels,), None),
    }
