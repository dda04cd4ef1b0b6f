"""The demo model: a small Llama-style decoder with a conv vision encoder and a conv audio encoder."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.demo_model.constants import IMAGE_SIZE, N_FRAMES, N_MELS

__all__ = ["DemoConfig", "DemoModel", "parameter_count"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo model."""

    vocab_size: int
    dim: int = 96
    n_layers: int = 2
    n_heads: int = 4
    ffn_dim: int = 256
    max_context_len: int = 128
    max_seq_len: int = 64
    image_size: int = IMAGE_SIZE
    vision_channels: tuple[int, int, int, int] = (12, 24, 48, 64)
    image_tokens: int = 4
    n_mels: int = N_MELS
    n_frames: int = N_FRAMES
    audio_channels: int = 64
    audio_tokens: int = 4
    head_hidden: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "vision_channels", tuple(self.vision_channels))
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.dim // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the weights file)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DemoConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**values)


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of ``x: [B, H, T, hd]`` with ``cos, sin: [T, hd/2]``."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # [B, H, T, hd/2] each
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)  # [B, H, T, hd]


class Attention(nn.Module):
    """Multi-head causal attention with RoPE; with a KV cache (batch 1) when built for inference."""

    k_cache: Tensor  # [1, H, C, hd]
    v_cache: Tensor  # [1, H, C, hd]
    ctx_idx: Tensor  # [C]

    def __init__(self, config: DemoConfig, use_kv_cache: bool) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.use_kv_cache = use_kv_cache
        self.wqkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)
        if use_kv_cache:
            shape = (1, config.n_heads, config.max_context_len, config.head_dim)
            self.register_buffer("k_cache", torch.zeros(shape), persistent=False)
            self.register_buffer("v_cache", torch.zeros(shape), persistent=False)
            self.register_buffer("ctx_idx", torch.arange(config.max_context_len), persistent=False)

    def forward(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # x: [B, T, D]; pos: [T] absolute positions; cos, sin: [T, hd/2]
        b, t, _ = x.shape
        qkv = self.wqkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [3, B, H, T, hd]
        q, k, v = _rotate(qkv[0], cos, sin), _rotate(qkv[1], cos, sin), qkv[2]
        if self.use_kv_cache:
            self.k_cache[:, :, pos] = k  # batch 1: write rows at the absolute positions
            self.v_cache[:, :, pos] = v
            keys, values = self.k_cache, self.v_cache  # [1, H, C, hd]
            mask = self.ctx_idx[None, :] <= pos[:, None]  # [T, C]
        else:
            keys, values = k, v  # [B, H, T, hd]
            mask = pos[None, :] <= pos[:, None]  # [T, T]
        scores = q @ keys.transpose(2, 3) / math.sqrt(self.head_dim)  # [B, H, T, C]
        scores = scores.masked_fill(~mask, float("-inf"))
        attn = scores.softmax(dim=-1) @ values  # [B, H, T, hd]
        out: Tensor = self.wo(attn.transpose(1, 2).reshape(b, t, -1))  # [B, T, D]
        return out


class FeedForward(nn.Module):
    """SwiGLU feed-forward block."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)  # [B, T, hidden] each
        out: Tensor = self.w2(F.silu(gate) * up)
        return out


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: DemoConfig, use_kv_cache: bool) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim)
        self.attention = Attention(config, use_kv_cache)
        self.ffn_norm = RMSNorm(config.dim)
        self.feed_forward = FeedForward(config.dim, config.ffn_dim)

    def forward(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x), pos, cos, sin)
        out: Tensor = x + self.feed_forward(self.ffn_norm(x))
        return out


class DecoderBody(nn.Module):
    """The decoder after the token embedding: blocks, final norm, output head and RoPE tables."""

    rope_cos: Tensor  # [C, hd/2]
    rope_sin: Tensor  # [C, hd/2]

    def __init__(self, config: DemoConfig, use_kv_cache: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(config, use_kv_cache) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        half = config.head_dim // 2
        inv_freq = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float32) / half))  # [hd/2]
        angles = torch.outer(torch.arange(config.max_context_len, dtype=torch.float32), inv_freq)  # [C, hd/2]
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)

    def forward(self, embeds: Tensor, pos: Tensor, last_only: bool) -> Tensor:
        """``embeds: [B, T, D]`` at positions ``pos: [T]`` -> logits ``[B, V]`` (last) or ``[B, T, V]``."""
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # [T, hd/2]
        h = embeds
        for layer in self.layers:
            h = layer(h, pos, cos, sin)
        if last_only:
            h = h[:, -1, :]  # [B, D]
        out: Tensor = self.output(self.norm(h))
        return out


def _pooled(features: Tensor) -> Tensor:
    """Mean and max over every position of ``features: [B, C, ...]`` -> ``[B, 2C]``."""
    flat = features.flatten(2)  # [B, C, N]
    return torch.cat((flat.mean(dim=2), flat.amax(dim=2)), dim=1)


_GROUPS = 4  # GroupNorm groups of the encoders' conv layers


def _conv2d(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    """3x3 convolution, group norm and GELU."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1), nn.GroupNorm(_GROUPS, outputs), nn.GELU()
    )


def _head(features: int, hidden: int, out: int) -> nn.Sequential:
    """Two-layer MLP from pooled features to the flattened output embeddings."""
    return nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, out))


class VisionEncoder(nn.Module):
    """Pixels ``[B, 3, S, S]`` in [0, 1] -> ``image_tokens`` embeddings ``[B, K, D]``."""

    def __init__(self, config: DemoConfig) -> None:
        super().__init__()
        c0, c1, c2, c3 = config.vision_channels
        self.convs = nn.Sequential(
            _conv2d(3, c0, stride=1),  # [B, c0, S, S]
            _conv2d(c0, c1, stride=2),  # [B, c1, S/2, S/2]
            _conv2d(c1, c2, stride=2),  # [B, c2, S/4, S/4]
            _conv2d(c2, c3, stride=2),  # [B, c3, S/8, S/8]
            _conv2d(c3, c3, stride=1),  # [B, c3, S/8, S/8]
        )
        self.features = 2 * c3
        self.head = _head(self.features, config.head_hidden, config.image_tokens * config.dim)
        self.tokens, self.dim = config.image_tokens, config.dim

    def pooled(self, pixels: Tensor) -> Tensor:
        """Pooled image features ``[B, 2 * c3]``."""
        return _pooled(self.convs((pixels - 0.5) * 4.0))

    def project(self, pooled: Tensor) -> Tensor:
        """Embeddings ``[B, K, D]`` of pooled features."""
        out: Tensor = self.head(pooled).view(-1, self.tokens, self.dim)
        return out

    def forward(self, pixels: Tensor) -> Tensor:
        return self.project(self.pooled(pixels))


class AudioEncoder(nn.Module):
    """Log-mel windows ``[B, n_mels, n_frames]`` -> ``audio_tokens`` embeddings per window ``[B, K, D]``."""

    def __init__(self, config: DemoConfig) -> None:
        super().__init__()
        c = config.audio_channels
        self.convs = nn.Sequential(
            nn.Conv1d(config.n_mels, c, 4, stride=4), nn.GroupNorm(_GROUPS, c), nn.GELU(),  # [B, c, T/4]
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GroupNorm(_GROUPS, c), nn.GELU(),  # [B, c, T/8]
            nn.Conv1d(c, c, 3, padding=1), nn.GroupNorm(_GROUPS, c), nn.GELU(),  # [B, c, T/8]
        )  # fmt: skip
        self.features = 2 * c
        self.head = _head(self.features, config.head_hidden, config.audio_tokens * config.dim)
        self.tokens, self.dim = config.audio_tokens, config.dim

    def pooled(self, mels: Tensor) -> Tensor:
        """Pooled features ``[B, 2c]`` of log-mel windows."""
        return _pooled(self.convs(mels))

    def project(self, pooled: Tensor) -> Tensor:
        """Embeddings ``[B, K, D]`` of pooled features."""
        out: Tensor = self.head(pooled).view(-1, self.tokens, self.dim)
        return out

    def forward(self, mels: Tensor) -> Tensor:
        return self.project(self.pooled(mels))


class DemoModel(nn.Module):
    """Token embedding, decoder body and both encoders; ``use_kv_cache`` builds the batch-1 inference form."""

    def __init__(self, config: DemoConfig, use_kv_cache: bool = False) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.body = DecoderBody(config, use_kv_cache)
        self.vision = VisionEncoder(config)
        self.audio = AudioEncoder(config)
        self._init_weights()

    def _init_weights(self) -> None:
        """Small normal embeddings and output head; default (Kaiming-uniform) elsewhere."""
        nn.init.normal_(self.tok_embeddings.weight, std=0.5)
        nn.init.normal_(self.body.output.weight, std=0.02)

    def sequence_logits(self, embeds: Tensor) -> Tensor:
        """Logits ``[B, T, V]`` of a whole sequence ``embeds: [B, T, D]`` starting at position 0 (no cache)."""
        pos = torch.arange(embeds.shape[1])  # [T]
        out: Tensor = self.body(embeds, pos, last_only=False)
        return out


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())
