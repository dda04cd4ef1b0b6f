"""Torch modules of the tiny test programs (decoder, encoders and the per-method wrappers)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.testing.specs import AudioEncoderSpec, DecoderSpec, PositionForm, ProgramSpec, VisionEncoderSpec

__all__ = [
    "AudioEncoder",
    "Decoder",
    "DecoderBody",
    "ForwardNoCache",
    "ForwardWithCache",
    "TextDecoder",
    "TokenEmbedding",
    "ScriptedDecoder",
    "ScriptedEmbedding",
    "VisionEncoder",
    "build_modules",
]


def _reinit(module: nn.Module, seed: int, std: float | None) -> None:
    """Seeded N(0, std) on every >=2-D parameter (std=None: 1/sqrt(fan_in)); zero 1-D biases."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.dim() >= 2:
                scale = std if std is not None else 1.0 / math.sqrt(p[0].numel())
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
            elif name.endswith("bias"):
                p.zero_()


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Apply rotary embedding to ``x: [1, H, T, hd]`` with ``cos, sin: [T, hd/2]``."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # [1, H, T, hd/2] each
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # [1, H, T, hd/2, 2]
    return out.flatten(-2)


class Attention(nn.Module):
    """Grouped-query attention with RoPE and an optional KV cache over the whole context."""

    k_cache: Tensor  # [1, Hkv, C, hd]
    v_cache: Tensor  # [1, Hkv, C, hd]
    ctx_idx: Tensor  # [C]
    slot_pos: Tensor  # [W] position + 1 held by each ring-buffer slot

    def __init__(self, spec: DecoderSpec, use_kv_cache: bool, window: int = 0, ring: bool = False) -> None:
        super().__init__()
        hd = spec.head_dim
        self.window, self.ring = window, ring
        self.n_heads, self.n_kv_heads, self.head_dim = spec.n_heads, spec.n_kv_heads, hd
        self.use_kv_cache = use_kv_cache
        self.wq = nn.Linear(spec.dim, spec.n_heads * hd, bias=False)
        self.wk = nn.Linear(spec.dim, spec.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(spec.dim, spec.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(spec.n_heads * hd, spec.dim, bias=False)
        if use_kv_cache:
            rows = window if ring else spec.max_context_len
            shape = (1, spec.n_kv_heads, rows, hd)
            self.register_buffer("k_cache", torch.zeros(shape), persistent=False)
            self.register_buffer("v_cache", torch.zeros(shape), persistent=False)
            self.register_buffer("ctx_idx", torch.arange(spec.max_context_len), persistent=False)
            if ring:  # position + 1 held by each slot (0: empty)
                self.register_buffer("slot_pos", torch.zeros(rows, dtype=torch.int64), persistent=False)

    def forward(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # x: [1, T, D]; pos: [T] absolute positions; cos, sin: [T, hd/2]
        t = x.shape[1]
        q = self.wq(x).view(1, t, self.n_heads, self.head_dim).transpose(1, 2)  # [1, H, T, hd]
        k = self.wk(x).view(1, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [1, Hkv, T, hd]
        v = self.wv(x).view(1, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [1, Hkv, T, hd]
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if self.use_kv_cache and self.ring:
            slots = pos % self.window  # [T]
            self.k_cache[:, :, slots] = k  # a ring buffer: position p lives in slot p % window
            self.v_cache[:, :, slots] = v
            self.slot_pos[slots] = pos + 1
            keys, values = self.k_cache, self.v_cache  # [1, Hkv, W, hd]
            held = self.slot_pos[None, :] - 1  # [1, W]
            mask = (held >= 0) & (held <= pos[:, None]) & (held > pos[:, None] - self.window)  # [T, W]
        elif self.use_kv_cache:
            self.k_cache[:, :, pos] = k  # index_put at absolute positions
            self.v_cache[:, :, pos] = v
            keys, values = self.k_cache, self.v_cache  # [1, Hkv, C, hd]
            mask = self.ctx_idx[None, :] <= pos[:, None]  # [T, C]
            if self.window:
                mask = mask & (self.ctx_idx[None, :] > pos[:, None] - self.window)
        else:
            keys, values = k, v  # [1, Hkv, T, hd]
            mask = pos[None, :] <= pos[:, None]  # [T, T] causal
        rep = self.n_heads // self.n_kv_heads
        if rep > 1:
            keys = keys.repeat_interleave(rep, dim=1)  # [1, H, C, hd]
            values = values.repeat_interleave(rep, dim=1)
        scores = q @ keys.transpose(2, 3) / math.sqrt(self.head_dim)  # [1, H, T, C]
        scores = torch.where(mask.view(1, 1, t, -1), scores, torch.full_like(scores, float("-inf")))
        attn = scores.softmax(dim=-1) @ values  # [1, H, T, hd]
        out: Tensor = self.wo(attn.transpose(1, 2).reshape(1, t, -1))  # [1, T, D]
        return out


class FeedForward(nn.Module):
    """SwiGLU feed-forward block."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return out


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, spec: DecoderSpec, use_kv_cache: bool, window: int = 0, ring: bool = False) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(spec.dim)
        self.attention = Attention(spec, use_kv_cache, window, ring)
        self.ffn_norm = RMSNorm(spec.dim)
        self.feed_forward = FeedForward(spec.dim, spec.ffn_dim)

    def forward(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x), pos, cos, sin)
        out: Tensor = x + self.feed_forward(self.ffn_norm(x))
        return out


class DecoderBody(nn.Module):
    """Everything of the decoder after the token embedding: blocks, final norm, output head, RoPE tables."""

    rope_cos: Tensor  # [C, hd/2]
    rope_sin: Tensor  # [C, hd/2]

    def __init__(self, spec: DecoderSpec, use_kv_cache: bool, window: int = 0, ring: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(spec, use_kv_cache, window, ring) for _ in range(spec.n_layers))
        self.norm = RMSNorm(spec.dim)
        self.output = nn.Linear(spec.dim, spec.vocab_size, bias=False)
        half = spec.head_dim // 2
        inv_freq = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float32) / half))  # [hd/2]
        angles = torch.outer(torch.arange(spec.max_context_len, dtype=torch.float32), inv_freq)  # [C, hd/2]
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)

    def forward(self, embeds: Tensor, pos: Tensor, all_logits: bool) -> Tensor:
        """``embeds: [1, T, D]`` at absolute positions ``pos: [T]`` -> logits ``[1, V]`` or ``[1, T, V]``."""
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # [T, hd/2]
        h = embeds
        for layer in self.layers:
            h = layer(h, pos, cos, sin)
        if not all_logits:
            h = h[:, -1, :]  # [1, D]
        out: Tensor = self.output(self.norm(h))
        return out


class Decoder(nn.Module):
    """Llama-style decoder: token embedding plus an untied-head body, seeded N(0, init_std) weights."""

    def __init__(self, spec: DecoderSpec, use_kv_cache: bool = True, window: int = 0, ring: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.tok_embeddings = nn.Embedding(spec.vocab_size, spec.dim)
        self.body = DecoderBody(spec, use_kv_cache, window, ring)
        _reinit(self, spec.seed, spec.init_std)

    def reset_cache(self) -> None:
        """Zero every layer's KV cache."""
        for buf_name, buf in self.named_buffers():
            if buf_name.endswith(("k_cache", "v_cache", "slot_pos")):
                buf.zero_()


def _absolute_positions(positions: Tensor, t: int, form: PositionForm) -> Tensor:
    """Positions ``[T]`` from a ``[1]`` start position or a ``[T]`` cache_position input."""
    if form == "start":
        return positions[0] + torch.arange(t, dtype=torch.int64)  # [T]
    return positions


class TokenEmbedding(nn.Module):
    """``token_embedding`` method: ``tokens [1, T]`` -> ``[1, T, D]``."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, tokens: Tensor) -> Tensor:
        out: Tensor = self.embedding(tokens)
        return out


class TextDecoder(nn.Module):
    """``text_decoder`` method: ``(embeds [1, T, D], positions)`` -> logits."""

    def __init__(self, body: DecoderBody, position_form: PositionForm, all_logits: bool) -> None:
        super().__init__()
        self.body = body
        self.position_form: PositionForm = position_form
        self.all_logits = all_logits

    def forward(self, embeds: Tensor, positions: Tensor) -> Tensor:
        pos = _absolute_positions(positions, embeds.shape[1], self.position_form)  # [T]
        out: Tensor = self.body(embeds, pos, self.all_logits)
        return out


class ForwardWithCache(nn.Module):
    """Text-program ``forward`` with a KV cache: ``(tokens [1, T], positions)`` -> logits."""

    def __init__(self, decoder: Decoder, position_form: PositionForm, all_logits: bool) -> None:
        super().__init__()
        self.decoder = decoder
        self.position_form: PositionForm = position_form
        self.all_logits = all_logits

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        pos = _absolute_positions(positions, tokens.shape[1], self.position_form)  # [T]
        out: Tensor = self.decoder.body(self.decoder.tok_embeddings(tokens), pos, self.all_logits)
        return out


class ForwardNoCache(nn.Module):
    """Text-program ``forward`` without a cache: ``tokens [1, T]`` (the whole sequence) -> logits."""

    def __init__(self, decoder: Decoder, all_logits: bool) -> None:
        super().__init__()
        self.decoder = decoder
        self.all_logits = all_logits

    def forward(self, tokens: Tensor) -> Tensor:
        pos = torch.arange(tokens.shape[1], dtype=torch.int64)  # [T]
        out: Tensor = self.decoder.body(self.decoder.tok_embeddings(tokens), pos, self.all_logits)
        return out


class VisionEncoder(nn.Module):
    """``vision_encoder`` method: image ``[1, 3, H, W]`` or ``[3, H, W]`` -> ``[1, N, D]`` float32."""

    def __init__(self, spec: VisionEncoderSpec, dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.fat: nn.Conv2d | None = None
        self.reduce: nn.Conv2d | None = None
        if spec.fat_channels > 0:
            self.fat = nn.Conv2d(3, spec.fat_channels, kernel_size=3, padding=1)
            self.reduce = nn.Conv2d(spec.fat_channels, 3, kernel_size=1)
        self.patch = nn.Conv2d(3, dim, kernel_size=spec.patch, stride=spec.patch)
        self.proj = nn.Linear(dim, dim)
        _reinit(self, spec.seed, None)

    def forward(self, image: Tensor) -> Tensor:
        x = image.to(torch.float32)
        if self.spec.dtype == "uint8":
            x = x / 255.0
        if self.spec.rank == 3:
            x = x.unsqueeze(0)  # [1, 3, H, W]
        if self.fat is not None and self.reduce is not None:
            x = x + self.reduce(F.gelu(self.fat(x)))  # fat activation: [1, C_fat, H, W]
        x = self.patch(x)  # [1, D, H/p, W/p]
        x = x.flatten(2).transpose(1, 2)  # [1, N, D]
        out: Tensor = self.proj(F.gelu(x))
        return out


class AudioEncoder(nn.Module):
    """Audio encoder: mel ``[B, bins, frames]`` -> ``[1, B*rows, D]``; raw ``[1, S]`` -> ``[1, rows, D]``."""

    def __init__(self, spec: AudioEncoderSpec, dim: int) -> None:
        super().__init__()
        self.spec = spec
        if spec.kind == "mel":
            self.conv1 = nn.Conv1d(spec.n_bins, dim, kernel_size=3, stride=2, padding=1)
            self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        else:
            self.frame = nn.Linear(spec.hop_length, dim)
        self.proj = nn.Linear(dim, dim)
        _reinit(self, spec.seed, None)

    def forward(self, audio: Tensor) -> Tensor:
        if self.spec.kind == "mel":
            x = F.gelu(self.conv1(audio))  # [B, D, frames/2]
            x = self.conv2(x).transpose(1, 2)  # [B, rows, D]
            x = x.reshape(1, -1, x.shape[-1])  # [1, B*rows, D]
        else:
            frames = audio.reshape(1, self.spec.rows, self.spec.hop_length)  # [1, rows, hop]
            x = self.frame(frames)  # [1, rows, D]
        out: Tensor = self.proj(F.gelu(x))
        return out


class ScriptedEmbedding(nn.Module):
    """``token_embedding`` of a scripted program: the token id in channel 0 (``[1, T] -> [1, T, D]``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, tokens: Tensor) -> Tensor:
        ids = tokens.to(torch.float32).unsqueeze(-1)  # [1, T, 1]
        return F.pad(ids, (0, self.dim - 1))  # [1, T, D]


class ScriptedDecoder(nn.Module):
    """``text_decoder`` that says a fixed token sequence, whatever the prompt.

    It keeps the token id of every position (a mutable buffer, like a KV cache) and, after the
    last one, emits the script token that follows the longest suffix of the history that is a
    prefix of the script (the first token when none is), then EOS. So generation prints the script
    exactly once per turn, with prefix reuse and rewinds behaving as with a real KV cache.
    """

    history: Tensor  # [C] token ids (-1: never written)
    windows: Tensor  # [n, n] the script prefix each suffix length must equal (-2: unchecked)
    checked: Tensor  # [n, n] which window entries count
    script: Tensor  # [n + 1] the script and EOS

    def __init__(self, script: tuple[int, ...], eos_id: int, vocab_size: int, max_context_len: int,
                 position_form: PositionForm) -> None:  # fmt: skip
        super().__init__()
        n = len(script)
        self.n, self.vocab_size = n, vocab_size
        self.position_form: PositionForm = position_form
        self.register_buffer("history", torch.full((max_context_len,), -1, dtype=torch.int64), persistent=False)
        windows = torch.full((n, n), -2, dtype=torch.int64)
        for i in range(n):  # row i: the last i+1 positions must equal script[:i+1]
            windows[i, n - 1 - i :] = torch.tensor(script[: i + 1], dtype=torch.int64)
        self.register_buffer("windows", windows, persistent=False)
        self.register_buffer("checked", windows >= 0, persistent=False)
        self.register_buffer("script", torch.tensor([*script, eos_id], dtype=torch.int64), persistent=False)

    def forward(self, embeds: Tensor, positions: Tensor) -> Tensor:
        pos = _absolute_positions(positions, embeds.shape[1], self.position_form)  # [T]
        self.history[pos] = embeds[0, :, 0].round().to(torch.int64)  # index_put at absolute positions
        last = pos[-1]
        index = last - (self.n - 1) + torch.arange(self.n, dtype=torch.int64)  # [n] the last n positions
        window = torch.where(index >= 0, self.history[index.clamp(min=0)], torch.full_like(index, -1))  # [n]
        matched = ((window[None, :] == self.windows) | ~self.checked).all(dim=1)  # [n]
        said = (matched.to(torch.int64) * torch.arange(1, self.n + 1, dtype=torch.int64)).max()  # tokens said
        token = (self.script * (torch.arange(self.n + 1) == said)).sum()  # script[said], without a data-dependent index
        logits = (torch.arange(self.vocab_size) == token).to(torch.float32) * 20.0 - 10.0  # [V]
        return logits.unsqueeze(0)  # [1, V]


def build_modules(spec: ProgramSpec) -> tuple[Decoder, dict[str, nn.Module]]:
    """The decoder and one module per compute method of ``spec`` (same weights on every call)."""
    decoder = Decoder(spec.decoder, use_kv_cache=spec.use_kv_cache, window=spec.sliding_window, ring=spec.ring_cache)
    all_logits = spec.logits == "all"
    methods: dict[str, nn.Module] = {}
    if spec.kind == "text":
        if spec.use_kv_cache:
            methods["forward"] = ForwardWithCache(decoder, spec.position_form, all_logits)
        else:
            methods["forward"] = ForwardNoCache(decoder, all_logits)
    elif spec.script:
        d = spec.decoder
        methods["token_embedding"] = ScriptedEmbedding(d.dim)
        eos = spec.eos_ids[0] if spec.eos_ids else 1
        methods["text_decoder"] = ScriptedDecoder(spec.script, eos, d.vocab_size, d.max_context_len, spec.position_form)
    else:
        methods["token_embedding"] = TokenEmbedding(decoder.tok_embeddings)
        methods["text_decoder"] = TextDecoder(decoder.body, spec.position_form, all_logits)
        if spec.vision is not None:
            methods["vision_encoder"] = VisionEncoder(spec.vision, spec.decoder.dim)
        if spec.audio is not None:
            methods["audio_encoder"] = AudioEncoder(spec.audio, spec.decoder.dim)
    for module in methods.values():
        module.eval()
    return decoder, {name: m for name, m in methods.items() if name not in spec.omit_methods}
