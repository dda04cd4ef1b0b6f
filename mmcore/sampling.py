"""Choosing the next token from logits: penalties, greedy, temperature, top-k and top-p, seeded."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

import torch

from mmcore.config import GenerationConfig

if TYPE_CHECKING:
    from mmcore.structured.mask import TokenMask

__all__ = ["Sampler"]


class Sampler:
    """Samples token ids over the logits' full width.

    Greedy (argmax, first maximum wins, as ExecuTorch) when `temperature` is 0 or `top_k` is 1.
    Otherwise logits are divided by `temperature`, cut to the `top_k` most likely and to the
    smallest set whose probability reaches `top_p`, and sampled with a generator seeded by `seed`:
    the same seed gives the same tokens. Repetition, frequency and presence penalties apply to the
    tokens this sampler has produced. With `logprobs`, `last_logprob` holds the log-probability of
    the last token under the distribution it was drawn from (temperature 1 when greedy). With a
    `mask` (constrained decoding), ids it forbids are set to -inf before choosing, in every mode,
    and each chosen token advances it.
    """

    def __init__(
        self,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        logprobs: bool = False,
        mask: TokenMask | None = None,
    ) -> None:
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.greedy = temperature == 0 or top_k == 1
        self.repetition_penalty = repetition_penalty
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty
        self.penalized = repetition_penalty != 1.0 or frequency_penalty != 0.0 or presence_penalty != 0.0
        self.logprobs = logprobs
        self.last_logprob: float | None = None
        self.counts: Counter[int] = Counter()
        self.mask = mask
        self._seed = seed
        self._generator_: torch.Generator | None = None

    @property
    def _generator(self) -> torch.Generator:
        """The seeded generator, created on the first sampled (non-greedy) token."""
        if self._generator_ is None:
            self._generator_ = torch.Generator()
            seed = self._seed if self._seed is not None else random.SystemRandom().getrandbits(63)
            self._generator_.manual_seed(seed)
        return self._generator_

    @classmethod
    def from_config(cls, config: GenerationConfig, *, mask: TokenMask | None = None) -> Sampler:
        """The sampler a generation config asks for (`mask`: its compiled response format)."""
        return cls(
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            seed=config.seed,
            repetition_penalty=config.repetition_penalty,
            frequency_penalty=config.frequency_penalty,
            presence_penalty=config.presence_penalty,
            logprobs=config.logprobs,
            mask=mask,
        )

    def __call__(self, logits: torch.Tensor, *, argmax: int | None = None) -> int:
        """The next token id from last-position logits `[V]` (left unchanged).

        `argmax`, if known, is the first maximum of `logits` (greedy sampling then skips the search).
        """
        if self.penalized and self.counts:
            logits, argmax = self._penalize(logits), None
        if self.mask is not None:
            logits, argmax = torch.from_numpy(self.mask.apply(logits.float().numpy())), None  # [V]
        if self.greedy:
            token = argmax if argmax is not None else _argmax(logits)
            if self.logprobs:
                self.last_logprob = float(torch.log_softmax(logits.float(), dim=-1)[token])
        else:
            token = self._sample(logits)
        if self.penalized:
            self.counts[token] += 1
        if self.mask is not None:
            self.mask.advance(token)
        return token

    def _sample(self, logits: torch.Tensor) -> int:
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
            token = int(order[torch.multinomial(sorted_probs, 1, generator=self._generator)])
            if self.logprobs:
                self.last_logprob = float(torch.log(sorted_probs[sorted_probs > 0].sum().reciprocal() * probs[token]))
            return token
        token = int(torch.multinomial(probs, 1, generator=self._generator))
        if self.logprobs:
            self.last_logprob = float(torch.log(probs[token]))
        return token

    def _penalize(self, logits: torch.Tensor) -> torch.Tensor:
        out = logits.float().clone()  # [V]
        ids = torch.tensor(list(self.counts), dtype=torch.long)
        counts = torch.tensor(list(self.counts.values()), dtype=torch.float32)
        seen = out[ids]
        if self.repetition_penalty != 1.0:
            seen = torch.where(seen > 0, seen / self.repetition_penalty, seen * self.repetition_penalty)
        seen = seen - self.frequency_penalty * counts - self.presence_penalty
        out[ids] = seen
        return out


def _argmax(logits: torch.Tensor) -> int:
    """Index of the first maximum (numpy's argmax is the cheaper call for one row)."""
    if logits.dtype in (torch.float32, torch.float16, torch.float64):
        return int(logits.numpy().argmax())
    return int(torch.argmax(logits))
