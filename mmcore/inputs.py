"""The input types the core handles itself: token ids and ready-made embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore.arrays import as_array
from mmcore.errors import InvalidInputError

__all__ = ["TokensInput", "EmbeddingsInput"]


@dataclass(frozen=True, init=False)
class TokensInput:
    """Token ids prefilled as they are (no BOS/EOS added)."""

    ids: tuple[int, ...]

    def __init__(self, ids: Iterable[int]) -> None:
        if isinstance(ids, np.ndarray) or hasattr(ids, "tolist"):  # a numpy array or torch tensor of ids
            ids = as_array(ids).reshape(-1).tolist()
        values = tuple(ids)
        if not all(type(i) is int for i in values) and not all(  # fast path: plain ints
            isinstance(i, int) and not isinstance(i, bool) for i in values
        ):
            raise InvalidInputError(f"TokensInput ids must be integers, got {values[:8]!r}")
        object.__setattr__(self, "ids", values)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False, init=False)
class EmbeddingsInput:
    """Embeddings written straight into the decoder's KV cache.

    Takes a numpy array or a torch tensor (converted to numpy at construction, sharing its memory).
    """

    embeddings: npt.NDArray[Any]  # [1, T, D]

    def __init__(self, embeddings: Any) -> None:
        try:
            array = as_array(embeddings)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"EmbeddingsInput takes a numpy array or torch tensor [1, T, D], got {type(embeddings).__name__}"
            ) from exc
        object.__setattr__(self, "embeddings", array)

    def __len__(self) -> int:
        return int(self.embeddings.shape[1]) if self.embeddings.ndim == 3 else 0
