"""Acceptance of draft tokens against the target's logits: greedy agreement and the rejection rule.

Row j of a verification call holds the target's logits after the current token and drafts 1..j, so
row j judges draft j + 1, and the row after the last accepted draft gives the next token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SamplingParams", "accept_greedy", "accept_sampled", "probabilities"]


@dataclass(frozen=True)
class SamplingParams:
    """The target's sampling transform (the same as `mmcore.Sampler`'s): temperature, top-k, top-p."""

    temperature: float
    top_k: int = 0
    top_p: float = 1.0


def accept_greedy(drafts: Sequence[int], row_argmax: Sequence[int]) -> int:
    """How many leading drafts equal the target's greedy choice (`row_argmax[j]` judges draft j)."""
    n = 0
    while n < len(drafts) and drafts[n] == row_argmax[n]:
        n += 1
    return n


def probabilities(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Per-row sampling distributions `[T, V]` (float64) of logits `[T, V]` under `params`."""
    scaled = logits.astype(np.float64) / params.temperature  # [T, V]
    width = scaled.shape[-1]
    if 0 < params.top_k < width:
        kth = np.partition(scaled, width - params.top_k, axis=-1)[:, width - params.top_k, None]  # [T, 1]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    scaled -= scaled.max(axis=-1, keepdims=True)
    probs = np.exp(scaled)
    probs /= probs.sum(axis=-1, keepdims=True)
    if params.top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")  # [T, V]
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the crossing token included)
        outside = np.cumsum(sorted_probs, axis=-1) - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, sorted_probs, axis=-1)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def accept_sampled(
    drafts: Sequence[int], target: np.ndarray, draft: np.ndarray | None, rng: np.random.Generator
) -> tuple[int, int]:
    """(accepted drafts n, the token after them) by the speculative-sampling rejection rule.

    `target` `[k + 1, V]`: the target's distributions of the verification rows; `draft` `[k, V]`: the
    distributions the drafts were sampled from (None: deterministic drafts, a one-hot q). Draft j is
    kept with probability min(1, p(d) / q(d)); the first rejected one is replaced by a sample of the
    normalised residual max(p - q, 0); when all are kept, the next token is sampled from the last row.
    The emitted tokens are then distributed exactly as sampling the target token by token.
    """
    for j, token in enumerate(drafts):
        p = target[j]
        q_token = 1.0 if draft is None else float(draft[j, token])
        if q_token > 0 and rng.random() * q_token < p[token]:
            continue
        residual = p.copy()
        if draft is None:
            residual[token] = 0.0
        else:
            residual = np.maximum(residual - draft[j], 0.0)
        total = residual.sum()
        if total <= 0:  # p == q: any rejection is impossible in exact arithmetic; fall back to p
            residual, total = p, p.sum()
        return j, _draw(residual / total, rng)
    return len(drafts), _draw(target[len(drafts)], rng)


def _draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One id from a distribution `[V]` (inverse CDF; the last id with mass takes any rounding)."""
    cdf = np.cumsum(probs)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(index, int(np.flatnonzero(probs)[-1]))
