"""Helpers every tokenizer in this package shares: BOS/EOS framing and path checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from mmcore.errors import InvalidInputError, TokenizerError

__all__ = ["frame", "require_file", "read_head", "check_ids", "TokenizerBase"]


def frame(ids: list[int], *, bos: int, eos: int, bos_id: int | None, eos_id: int | None, name: str) -> list[int]:
    """`ids` with exactly `bos` BOS ids before and `eos` EOS ids after."""
    for label, count in (("bos", bos), ("eos", eos)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInputError(
                f"{name}.encode: {label}={count!r} is not a count; pass a non-negative int "
                f"(the number of {label.upper()} ids to add)"
            )
    if bos and bos_id is None:
        raise TokenizerError(
            f"{name} has no BOS token, so bos={bos} cannot be honoured; pass bos=0 or use a tokenizer "
            "that defines one (e.g. a directory with tokenizer_config.json naming bos_token)"
        )
    if eos and eos_id is None:
        raise TokenizerError(
            f"{name} has no EOS token, so eos={eos} cannot be honoured; pass eos=0 or use a tokenizer "
            "that defines one (e.g. a directory with tokenizer_config.json naming eos_token)"
        )
    if not bos and not eos:
        return ids
    head = [bos_id] * bos if bos_id is not None else []
    tail = [eos_id] * eos if eos_id is not None else []
    return head + ids + tail


def require_file(path: Path, kind: str) -> Path:
    """`path` if it is a readable file; otherwise `TokenizerError` naming it and saying what was expected."""
    if not path.exists():
        raise TokenizerError(f"{kind} file {path} does not exist; pass the path of an existing {kind} file")
    if not path.is_file():
        raise TokenizerError(f"{kind} path {path} is not a file; pass the path of a {kind} file")
    return path


def read_head(path: Path, size: int = 4096) -> bytes:
    """The first `size` bytes of `path`, or b"" if it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def check_ids(ids: Sequence[int], vocab_size: int, name: str) -> list[int]:
    """`ids` as a list; `InvalidInputError` naming the first id outside 0..vocab_size-1."""
    values = [int(i) for i in ids]
    for i in values:
        if not 0 <= i < vocab_size:
            raise InvalidInputError(
                f"{name}.decode: id {i} is outside the vocabulary 0..{vocab_size - 1}; pass ids this tokenizer produced"
            )
    return values


class TokenizerBase:
    """BOS/EOS ids, vocabulary size, framing and id checks shared by this package's tokenizers.

    A subclass calls `_set_ids` from its constructor.
    """

    _bos_id: int | None
    _eos_id: int | None
    _eos_ids: frozenset[int]
    _vocab_size: int
    _source: str

    def _set_ids(
        self,
        *,
        bos_id: int | None,
        eos_id: int | None,
        vocab_size: int,
        source: str,
        extra_eos_ids: Iterable[int] = (),
    ) -> None:
        self._bos_id = bos_id
        self._eos_id = eos_id
        self._vocab_size = vocab_size
        self._source = source
        self._eos_ids = frozenset({*extra_eos_ids, *([] if eos_id is None else [eos_id])})

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id, if the tokenizer has one."""
        return self._bos_id

    @property
    def eos_ids(self) -> frozenset[int]:
        """Ids that end a sequence: the EOS id and any extra ones the tokenizer's files name."""
        return self._eos_ids

    @property
    def eos_id(self) -> int | None:
        """The EOS id `encode(..., eos=n)` appends."""
        return self._eos_id

    @property
    def vocab_size(self) -> int:
        """Number of ids, regular and special tokens together."""
        return self._vocab_size

    def _frame(self, ids: list[int], bos: int, eos: int) -> list[int]:
        return frame(ids, bos=bos, eos=eos, bos_id=self._bos_id, eos_id=self._eos_id, name=self._name())

    def _checked(self, ids: Sequence[int]) -> list[int]:
        return check_ids(ids, self._vocab_size, self._name())

    def _name(self) -> str:
        return f"{type(self).__name__}({self._source})"
