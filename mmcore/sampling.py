"""Choosing the next token from logits: penalties, greedy, temperature, top-k and top-p, seeded."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mmcore.arrays import as_array, to_float32
from mmcore.config import GenerationConfig

if TYPE_CHECKING:
    from mmcore.structured.mask import TokenMask

__all__ = ["Sampler", "top_ids"]


class Sampler:
    """Samples token ids over the logits' full width.

    Greedy (argmax, first maximum wins, as ExecuTorch) when `temperature` is 0 or `top_k` is 1.
    Otherwise logits are divided by `temperature`, cut to the `top_k` most likely and to the
    smallest set whose probability reaches `top_p`, and sampled with numpy's PCG64 generator seeded
    by `seed`: the same seed gives the same tokens, with or without torch installed. Repetition,
    frequency and presence penalties apply to the tokens this sampler has produced. With
    `logprobs`, `last_logprob` holds the log-probability of the last token under the distribution
    it was drawn from: the logits after penalties and the mask, divided by the temperature and cut
    by top-k/top-p (renormalised) when sampling, at temperature 1 when greedy. With `top_logprobs`
    = k > 0, `last_top` holds the k most likely ids of that same distribution with their
    log-probabilities, most likely first (ties by id; ids it cannot draw have -inf); nothing of
    this is computed unless asked for. With a `mask` (constrained decoding), ids it
    forbids are set to -inf before choosing, in every mode, and each chosen token advances it.
    Logits are numpy arrays (a torch tensor is converted).
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
        top_logprobs: int = 0,
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
        self.top_logprobs = top_logprobs
        self.logprobs = logprobs or top_logprobs > 0
        self.last_logprob: float | None = None
        self.last_top: list[tuple[int, float]] | None = None
        self.counts: Counter[int] = Counter()
        self.mask = mask
        self._seed = seed
        self._generator_: np.random.Generator | None = None

    @property
    def _generator(self) -> np.random.Generator:
        """The seeded generator, created on the first sampled (non-greedy) token."""
        if self._generator_ is None:
            seed = self._seed if self._seed is not None else random.SystemRandom().getrandbits(63)
            self._generator_ = np.random.default_rng(seed)
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
            top_logprobs=config.top_logprobs,
            mask=mask,
        )

    def __call__(self, logits: Any, *, argmax: int | None = None) -> int:
        """The next token id from last-position logits `[V]` (a numpy array, or a torch tensor;
        left unchanged).

        `argmax`, if known, is the first maximum of `logits` (greedy sampling then skips the search).
        """
        row = as_array(logits)  # [V]
        if self.penalized and self.counts:
            row, argmax = self._penalize(row), None
        if self.mask is not None:
            row, argmax = self.mask.apply(row), None  # [V] float32, forbidden ids -inf
        if self.greedy:
            token = argmax if argmax is not None else _argmax(row)
            if self.logprobs:
                self._report(_log_softmax(to_float32(row)), token)
        else:
            token = self._sample(row)
        if self.penalized:
            self.counts[token] += 1
        if self.mask is not None:
            self.mask.advance(token)
        return token

    def _sample(self, logits: npt.NDArray[Any]) -> int:
        # scaled: [V] float32, so half/bf16 logits sample as precisely as float ones
        scaled = to_float32(logits) / np.float32(self.temperature)
        if 0 < self.top_k < scaled.shape[-1]:
            kth = np.partition(scaled, -self.top_k)[-self.top_k]
            scaled = np.where(scaled < kth, np.float32(-np.inf), scaled)
        probs = np.exp(_log_softmax(scaled).astype(np.float64))  # [V], float64 for the cumulative sums
        if self.top_p < 1.0:
            order = _nucleus_order(probs, self.top_p)  # most likely first, ties by id
            sorted_probs = probs[order]
            # keep the smallest prefix whose mass reaches top_p (the crossing token included)
            outside = np.cumsum(sorted_probs) - sorted_probs >= self.top_p
            sorted_probs[outside] = 0.0
            token = int(order[self._draw(sorted_probs)])
            if self.top_logprobs:  # the renormalised nucleus; ids outside it cannot be drawn
                kept = np.zeros_like(probs)
                kept[order] = sorted_probs / sorted_probs.sum()
                with np.errstate(divide="ignore"):
                    self._report(np.log(kept), token)
            elif self.logprobs:
                self.last_logprob = float(np.log(probs[token] / sorted_probs.sum()))
            return token
        token = self._draw(probs)
        if self.top_logprobs:
            with np.errstate(divide="ignore"):
                self._report(np.log(probs), token)
        elif self.logprobs:
            self.last_logprob = float(np.log(probs[token]))
        return token

    def _report(self, logprobs: npt.NDArray[Any], token: int) -> None:
        """Record `token`'s log-probability and, when asked for, the `top_logprobs` most likely ids
        of `logprobs` `[V]` (the distribution it was drawn from)."""
        self.last_logprob = float(logprobs[token])
        if self.top_logprobs:
            self.last_top = top_ids(logprobs, self.top_logprobs)

    def _draw(self, weights: npt.NDArray[np.float64]) -> int:
        """An index drawn with probability proportional to `weights` (zero weights never drawn)."""
        cumulative = np.cumsum(weights)  # [V]
        index = int(np.searchsorted(cumulative, self._generator.random() * cumulative[-1], side="right"))
        # rounding can put the draw at the very end: take the last id with weight
        return index if index < len(weights) and weights[index] > 0 else int(np.flatnonzero(weights)[-1])

    def _penalize(self, logits: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        out = logits.astype(np.float32)  # [V], a copy
        ids = np.fromiter(self.counts, dtype=np.int64, count=len(self.counts))
        counts = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
        seen = out[ids]
        if self.repetition_penalty != 1.0:
            seen = np.where(seen > 0, seen / self.repetition_penalty, seen * self.repetition_penalty)
        out[ids] = seen - self.frequency_penalty * counts - self.presence_penalty
        return out


def top_ids(logprobs: npt.NDArray[Any], k: int) -> list[tuple[int, float]]:
    """The `k` largest entries of `logprobs` `[V]` as (id, value), largest first, ties by ascending id."""
    k = min(k, logprobs.shape[-1])
    if k < logprobs.shape[-1]:
        kth = np.partition(logprobs, -k)[-k]
        candidates = np.flatnonzero(logprobs >= kth)  # ascending; every tie of the k-th value
    else:
        candidates = np.arange(logprobs.shape[-1])
    order = candidates[np.argsort(-logprobs[candidates], kind="stable")][:k]
    return [(int(i), float(logprobs[i])) for i in order]


def _nucleus_order(probs: npt.NDArray[np.float64], top_p: float) -> npt.NDArray[np.intp]:
    """Ids in descending probability (ties by ascending id), at least as far as the mass reaches
    `top_p`: the prefix a full stable sort would give, found by partitioning a growing candidate
    set instead of sorting the whole vocabulary. Ids of probability 0 (cut by top-k) are left out:
    they are never drawn, and numpy's partition is slow on many equal values."""
    ids = np.flatnonzero(probs > 0)  # ascending
    live = probs[ids]
    width = len(live)
    k = 64
    while k < width:
        kth = np.partition(live, width - k)[width - k]
        candidates = np.flatnonzero(live >= kth)  # ascending; every tie of the k-th value included
        order = candidates[np.argsort(-live[candidates], kind="stable")]
        if live[order].sum() >= top_p:
            return ids[order]
        k *= 8
    full: npt.NDArray[np.intp] = ids[np.argsort(-live, kind="stable")]
    return full


def _log_softmax(row: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = row - row.max()
    result: npt.NDArray[np.float32] = shifted - np.log(np.exp(shifted).sum())
    return result


def _argmax(logits: npt.NDArray[Any]) -> int:
    """Index of the first maximum (as ExecuTorch's greedy sampling); bfloat16 is widened exactly."""
    row = logits if logits.dtype in _NATIVE_FLOATS else to_float32(logits)
    return int(row.argmax())


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))
