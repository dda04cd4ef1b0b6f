"""Helpers every tokenizer in this package shares: BOS/EOS framing and path checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcore.errors import InvalidInputError, TokenizerError

__all__ = ["frame", "require_file", "read_head", "check_ids"]


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
