"""The per-token mask of one constrained generation: which ids may come next, updated per token."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mmcore.errors import ConstraintError
from mmcore.structured._llguidance import one_line
from mmcore.structured.formats import ResponseFormat

if TYPE_CHECKING:
    import llguidance

__all__ = ["TokenMask"]


class TokenMask:
    """The ids a constraint allows next, for logits `width` ids wide.

    `bitmask` (int32 `[ceil(width / 32)]`, bit `i % 32` of word `i // 32` set when id `i` is allowed)
    always holds the mask for the next token: it is filled at the start and again by every `advance`.
    EOS ids are allowed exactly when the text so far is a complete answer; once the constraint can
    take no more text only EOS is allowed. Ids past the tokenizer's vocabulary are never allowed.
    """

    def __init__(
        self, matcher: llguidance.LLMatcher, fmt: ResponseFormat, width: int, vocab_size: int, eos_ids: Collection[int]
    ) -> None:
        self._matcher = matcher
        self.format = fmt
        self.width = width
        self.eos_ids = frozenset(eos_ids)
        self.bitmask: npt.NDArray[np.int32] = np.zeros((width + 31) // 32, dtype=np.int32)  # [W]
        self._fill_bytes = 4 * ((vocab_size + 31) // 32)  # llguidance writes the tokenizer's words only
        self.ended = False  # an EOS id was accepted
        self._fill()

    @property
    def complete(self) -> bool:
        """Whether the tokens so far form a complete answer (EOS allowed, or accepted)."""
        return self.ended or bool(self._matcher.is_accepting())

    def allowed(self) -> npt.NDArray[np.bool_]:
        """`[width]` True where the id may come next."""
        bits = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little", count=self.width)
        return bits.view(np.bool_)

    def apply(self, logits: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """A float32 copy of `logits` `[width]` with every id the constraint forbids at -inf."""
        row = np.asarray(logits, dtype=np.float32)  # [V]
        return np.where(self.allowed(), row, np.float32(-np.inf))

    def advance(self, token: int) -> None:
        """Take `token` as generated and compute the mask of the one after it."""
        if self.ended:
            raise ConstraintError(f"token {token} came after the constrained answer ended with EOS")
        if not self._matcher.consume_token(token):
            raise ConstraintError(
                f"token {token} is not allowed by response_format {self.format.describe()}: "
                f"{one_line(self._matcher.get_error())}"
            )
        if token in self.eos_ids:
            self.ended = True
            return
        self._fill()

    def accepted_prefix(self, tokens: Sequence[int]) -> int:
        """How many of `tokens` (e.g. a speculative draft), in order from the current state, the
        constraint allows; the state is left unchanged. A draft token past this count must be
        rejected without a decoder call."""
        if self.ended or not tokens:
            return 0
        return int(self._matcher.validate_tokens(list(tokens)))

    def rollback(self, count: int) -> None:
        """Undo the last `count` advanced tokens (rejected speculative tokens) and refill the mask."""
        if count <= 0:
            return
        if not self._matcher.rollback(count):
            raise ConstraintError(f"cannot roll the constraint back by {count} token(s)")
        self.ended = False
        self._fill()

    def _fill(self) -> None:
        self._matcher.unsafe_compute_mask_ptr(self.bitmask.ctypes.data, self._fill_bytes)
        error = str(self._matcher.get_error()) if self._matcher.is_error() else ""
        dead_end = error.startswith("NoExtension")  # no byte can continue the text so far
        if error and not dead_end:
            raise ConstraintError(f"response_format {self.format.describe()} failed: {one_line(error)}")
        if dead_end or not self.bitmask.any():
            raise ConstraintError(
                f"response_format {self.format.describe()} allows no token here: no token of this "
                "vocabulary continues the answer (the constraint cannot be satisfied with this tokenizer)"
            )
