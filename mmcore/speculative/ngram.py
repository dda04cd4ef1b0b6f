"""Prompt lookup: drafts that continue an earlier occurrence of the history's last n tokens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NO_TOKEN", "NgramDrafter"]

#: A history position that holds no token id (an embedding row from an image or audio input).
NO_TOKEN = -1


class NgramDrafter:
    """Proposes the tokens that followed the most recent earlier occurrence of the last n tokens of
    the history (prompt and generated text), trying n = `max_ngram` down to `min_ngram`.

    The history only grows between calls (one drafter per `generate` call); n-grams are indexed
    incrementally, so a proposal costs O(new tokens), not O(history).
    """

    draft_probs: np.ndarray | None = None  # drafts are deterministic (a one-hot draft distribution)

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        # n -> {n-gram: where its latest continuation starts}
        self._index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(min_ngram, max_ngram + 1)}
        self._indexed = 0  # n-grams ending before this history position are indexed

    def propose(self, history: Sequence[int], k: int) -> list[int]:
        """At most `k` tokens that may follow `history`; empty when no suffix occurred before."""
        last = len(history) - 1
        for end in range(self._indexed, last):  # n-grams ending at `end` continue at end + 1
            for n, table in self._index.items():
                if end + 1 >= n:
                    gram = tuple(history[end + 1 - n : end + 1])
                    if NO_TOKEN not in gram:
                        table[gram] = end + 1
        self._indexed = max(self._indexed, last)
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if len(history) < n:
                continue
            start = self._index[n].get(tuple(history[-n:]))
            if start is not None:
                drafts: list[int] = []
                for token in history[start : start + k]:
                    if token == NO_TOKEN:
                        break
                    drafts.append(token)
                if drafts:
                    return drafts
        return []

    def accept(self, n: int) -> None:
        """Nothing to update: accepted tokens arrive with the next history."""
