"""The input types the core handles itself: token ids and ready-made embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from mmcore.errors import InvalidInputError

__all__ = ["TokensInput", "EmbeddingsInput"]


@dataclass(frozen=True, init=False)
class TokensInput:
    """Token ids prefilled as they are (no BOS/EOS added)."""

    ids: tuple[int, ...]

    def __init__(self, ids: Iterable[int]) -> None:
        values = tuple(ids)
        if not all(type(i) is int for i in values) and not all(  # fast path: plain ints
            isinstance(i, int) and not isinstance(i, bool) for i in values
        ):
            raise InvalidInputError(f"TokensInput ids must be integers, got {values[:8]!r}")
        object.__setattr__(self, "ids", values)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class EmbeddingsInput:
    """Embeddings written straight into the decoder's KV cache."""

    embeddings: torch.Tensor  # [1, T, D]

    def __len__(self) -> int:
        return int(self.embeddings.shape[1]) if self.embeddings.dim() == 3 else 0
