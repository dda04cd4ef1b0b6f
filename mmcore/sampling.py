"""Choosing the next token from logits: greedy, temperature, top-k and top-p, seeded."""

from __future__ import annotations

import random

import torch

__all__ = ["Sampler"]


class Sampler:
    """Samples token ids over the logits' full width.

    Greedy (argmax, first maximum wins, as ExecuTorch) when `temperature` is 0 or `top_k` is 1.
    Otherwise logits are divided by `temperature`, cut to the `top_k` most likely and to the
    smallest set whose probability reaches `top_p`, and sampled with a generator seeded by `seed`:
    the same seed gives the same tokens.
    """

    def __init__(
        self, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None
    ) -> None:
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.greedy = temperature == 0 or top_k == 1
        self._generator = torch.Generator()
        self._generator.manual_seed(seed if seed is not None else random.SystemRandom().getrandbits(63))

    def __call__(self, logits: torch.Tensor) -> int:
        """The next token id from last-position logits `[V]`."""
        if self.greedy:
            return int(torch.argmax(logits))
        # scaled: [V] float32, so half/bf16 logits sample as precisely as float ones
        scaled = logits.float() / self.temperature
        if 0 < self.top_k < scaled.shape[-1]:
            kth = torch.topk(scaled, self.top_k).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            # keep the smallest prefix whose mass reaches top_p (the crossing token included)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= self.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            choice = torch.multinomial(sorted_probs, 1, generator=self._generator)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=self._generator))
