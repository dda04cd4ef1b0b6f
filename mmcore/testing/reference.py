"""Eager PyTorch twin of a test program, and the greedy loop ExecuTorch's C++ runner runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from mmcore.arrays import to_torch
from mmcore.testing.models import Decoder, build_modules
from mmcore.testing.specs import ProgramSpec

__all__ = ["EagerProgram", "Segment", "SegmentKind", "eager_model"]

SegmentKind = Literal["tokens", "image", "audio"]
#: One prefill segment: ``("tokens", [ids])``, ``("image", tensor)`` or ``("audio", tensor)``.
Segment = tuple[SegmentKind, Sequence[int] | Tensor]


class EagerProgram:
    """The eager modules of a :class:`ProgramSpec`, with the same weights and methods as its ``.pte``.

    Methods missing from the program because of ``omit_methods`` are still available here.
    """

    def __init__(self, spec: ProgramSpec) -> None:
        self.spec = spec
        full = dataclasses.replace(spec, omit_methods=())
        self._decoder: Decoder
        self._decoder, self._methods = build_modules(full)

    @property
    def method_names(self) -> tuple[str, ...]:
        """Compute methods available (the program's, plus any omitted ones)."""
        return tuple(self._methods)

    def _call(self, name: str, *args: Tensor) -> Tensor:
        module: nn.Module | None = self._methods.get(name)
        if module is None:
            raise AttributeError(f"a {self.spec.kind} program has no {name!r} method")
        with torch.no_grad():
            out: Tensor = module(*args)
        return out

    def token_embedding(self, tokens: Tensor) -> Tensor:
        """``tokens: [1, T]`` int64 -> ``[1, T, D]``."""
        return self._call("token_embedding", tokens)

    def text_decoder(self, embeds: Tensor, positions: Tensor) -> Tensor:
        """``embeds: [1, T, D]``, positions in the spec's form -> logits ``[1, V]`` or ``[1, T, V]``."""
        return self._call("text_decoder", embeds, positions)

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """Text program: ``tokens: [1, T]`` (+ positions when it has a KV cache) -> logits."""
        if positions is None:
            return self._call("forward", tokens)
        return self._call("forward", tokens, positions)

    def vision_encoder(self, image: Tensor) -> Tensor:
        """Image in the encoder's input shape and dtype -> ``[1, N, D]``."""
        return self._call("vision_encoder", image)

    def audio_encoder(self, audio: Tensor) -> Tensor:
        """Mel ``[B, bins, frames]`` or waveform ``[1, samples]`` -> ``[1, rows, D]``."""
        return self._call("audio_encoder", audio)

    def reset(self) -> None:
        """Zero the KV cache."""
        self._decoder.reset_cache()

    def positions(self, start: int, length: int) -> Tensor:
        """The position input for ``length`` items at ``start``, in the spec's position form."""
        if self.spec.position_form == "start":
            return torch.tensor([start], dtype=torch.int64)  # [1]
        return torch.arange(start, start + length, dtype=torch.int64)  # [T]

    def _chunks(self, length: int) -> Iterable[tuple[int, int]]:
        """``(offset, size)`` pieces of a segment the program accepts in one call."""
        step = self.spec.max_input_len
        return ((i, min(step, length - i)) for i in range(0, length, step))

    def _decode_embeds(self, embeds: Tensor, start: int) -> Tensor:
        """Run ``embeds: [1, T, D]`` through the decoder at ``start``; last-position logits ``[1, V]``."""
        logits = embeds.new_zeros(0)
        for off, size in self._chunks(embeds.shape[1]):
            part = embeds[:, off : off + size]  # [1, t, D]
            logits = self.text_decoder(part, self.positions(start + off, size))
        return _last(logits)

    def _forward_tokens(self, tokens: Sequence[int], start: int) -> Tensor:
        """Text program with cache: feed ``tokens`` at ``start``; last-position logits ``[1, V]``."""
        ids = torch.tensor([list(tokens)], dtype=torch.int64)  # [1, T]
        logits = ids.new_zeros(0, dtype=torch.float32)
        for off, size in self._chunks(ids.shape[1]):
            logits = self.forward(ids[:, off : off + size], self.positions(start + off, size))
        return _last(logits)

    def _encode(self, kind: SegmentKind, value: Sequence[int] | Tensor) -> Tensor:
        """Embeddings ``[1, T, D]`` of one multimodal segment."""
        if kind == "tokens":
            return self.token_embedding(torch.tensor([list(value)], dtype=torch.int64))
        if isinstance(value, np.ndarray):  # what the plugins' preprocessing returns
            value = to_torch(value)
        if not isinstance(value, Tensor):
            raise TypeError(f"a {kind} segment needs an array or tensor, got {type(value).__name__}")
        return self.vision_encoder(value) if kind == "image" else self.audio_encoder(value)

    def prefill(self, segments: Sequence[Segment]) -> tuple[Tensor, int]:
        """Reset, then run each segment as its own decoder call at increasing positions.

        Returns the last logits ``[1, V]`` and the next free position.
        """
        self.reset()
        if not segments:
            raise ValueError("nothing to prefill")
        pos = 0
        logits = torch.zeros(0)
        if self.spec.kind == "text":
            if any(kind != "tokens" for kind, _ in segments):
                raise ValueError("a text program takes only token segments")
            tokens = [int(t) for _, value in segments for t in value]
            if not self.spec.use_kv_cache:
                return _last(self.forward(torch.tensor([tokens], dtype=torch.int64))), len(tokens)
            for _, value in segments:
                logits = self._forward_tokens(list(value), pos)
                pos += len(value)
            return logits, pos
        for kind, value in segments:
            embeds = self._encode(kind, value)  # [1, T, D]
            logits = self._decode_embeds(embeds, pos)
            pos += embeds.shape[1]
        return logits, pos

    def _step(self, token: int, pos: int, history: list[int]) -> Tensor:
        """Logits ``[1, V]`` after feeding ``token`` at ``pos``."""
        if self.spec.kind == "text":
            if not self.spec.use_kv_cache:
                return _last(self.forward(torch.tensor([history], dtype=torch.int64)))
            return self._forward_tokens([token], pos)
        return self._decode_embeds(self._encode("tokens", [token]), pos)

    def greedy_generate(
        self, segments: Sequence[Segment], max_new_tokens: int, eos_ids: Iterable[int] | None = None
    ) -> list[int]:
        """Greedy ids as ExecuTorch's C++ runner emits them (the prefill token is never checked for EOS).

        ``eos_ids`` defaults to the spec's ``eos_ids``. Returns at most ``max_new_tokens`` ids.
        """
        if max_new_tokens < 1:
            return []
        stop = set(self.spec.eos_ids if eos_ids is None else eos_ids)
        logits, pos = self.prefill(segments)
        history = [int(t) for kind, value in segments if kind == "tokens" for t in value]
        token = int(logits.argmax(dim=-1))
        out = [token]
        while len(out) < max_new_tokens:
            history.append(token)
            logits = self._step(token, pos, history)  # [1, V]
            pos += 1
            token = int(logits.argmax(dim=-1))
            out.append(token)
            if token in stop:
                break
        return out


def _last(logits: Tensor) -> Tensor:
    """Last-position logits ``[1, V]`` from ``[1, V]`` or ``[1, T, V]``."""
    return logits[:, -1, :] if logits.dim() == 3 else logits


def eager_model(spec: ProgramSpec) -> EagerProgram:
    """The eager twin of the program :func:`~mmcore.testing.build_program` builds for ``spec``."""
    return EagerProgram(spec)
