"""Tiktoken BPE files (`<base64 token> <rank>` per line) with Llama 3's pattern and special tokens."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmcore.errors import TokenizerError
from mmcore_text._common import TokenizerBase, read_head, require_file

__all__ = [
    "TiktokenTokenizer",
    "TiktokenLoader",
    "LLAMA3_PATTERN",
    "RE2_PATTERN",
    "LLAMA3_SPECIAL_TOKENS",
    "read_tiktoken_ranks",
]

logger = logging.getLogger(__name__)

# Llama 3's pre-tokenizer pattern (meta-llama's tokenizer.py, tiktoken's cl100k).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The same without the `\s+(?!\S)` look-ahead, as ExecuTorch's C++ Tiktoken uses by default (RE2 has no
# look-ahead). It splits runs of spaces before a word differently ("a  b": "  ", "b" vs " ", " b").
RE2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+"
)

_NUM_SPECIAL_TOKENS = 256
_NAMED_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
)
# Llama 3's 256 special tokens, in id order after the base vocabulary (ExecuTorch's C++ layout).
LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = _NAMED_SPECIAL_TOKENS + tuple(
    f"<|reserved_special_token_{i}|>" for i in range(2, 2 + _NUM_SPECIAL_TOKENS - len(_NAMED_SPECIAL_TOKENS))
)

_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2} [0-9]+$")


def read_tiktoken_ranks(path: str | os.PathLike[str]) -> dict[bytes, int]:
    """Token bytes -> rank from a tiktoken BPE file; `TokenizerError` naming the bad line if malformed."""
    target = require_file(Path(path), "tiktoken")
    ranks: dict[bytes, int] = {}
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"cannot read tiktoken file {target}: {exc}") from exc
    for number, line in enumerate(data.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(b" ")
        try:
            if len(parts) != 2:
                raise ValueError("expected two fields")
            token = base64.b64decode(parts[0], validate=True)
            rank = int(parts[1])
        except (ValueError, binascii.Error) as exc:
            raise TokenizerError(
                f"tiktoken file {target}, line {number}: {line[:60]!r} is not '<base64 token> <rank>' "
                f"({exc}); pass a tiktoken BPE file such as Llama 3's tokenizer.model"
            ) from exc
        ranks[token] = rank
    if not ranks:
        raise TokenizerError(f"tiktoken file {target} holds no tokens; pass a non-empty tiktoken BPE file")
    return ranks


class TiktokenTokenizer(TokenizerBase):
    """A tiktoken BPE with special tokens numbered after the base vocabulary (Llama 3 layout by default)."""

    def __init__(
        self,
        mergeable_ranks: Mapping[bytes, int],
        *,
        special_tokens: Sequence[str] = LLAMA3_SPECIAL_TOKENS,
        pattern: str = LLAMA3_PATTERN,
        bos_token: str | None = "<|begin_of_text|>",
        eos_tokens: Sequence[str] = ("<|end_of_text|>", "<|eot_id|>"),
        source: str = "tiktoken",
    ) -> None:
        num_base = len(mergeable_ranks)
        self._special = {token: num_base + i for i, token in enumerate(special_tokens)}
        import tiktoken  # imported with the first tiktoken encoding

        self._encoding = tiktoken.Encoding(
            Path(source).name or "tiktoken",
            pat_str=pattern,
            mergeable_ranks=dict(mergeable_ranks),
            special_tokens=self._special,
        )
        eos = [self._special[t] for t in eos_tokens if t in self._special]
        self._set_ids(
            bos_id=self._special.get(bos_token) if bos_token is not None else None,
            eos_id=eos[0] if eos else None,
            vocab_size=num_base + len(self._special),
            source=source,
            extra_eos_ids=eos,
        )
        self._special_ids = frozenset(self._special.values())

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        special_tokens: Sequence[str] = LLAMA3_SPECIAL_TOKENS,
        pattern: str = LLAMA3_PATTERN,
        bos_token: str | None = "<|begin_of_text|>",
        eos_tokens: Sequence[str] = ("<|end_of_text|>", "<|eot_id|>"),
    ) -> TiktokenTokenizer:
        """Load a tiktoken BPE file (Llama 3's `tokenizer.model`)."""
        ranks = read_tiktoken_ranks(path)
        try:
            return cls(
                ranks,
                special_tokens=special_tokens,
                pattern=pattern,
                bos_token=bos_token,
                eos_tokens=eos_tokens,
                source=str(path),
            )
        except ValueError as exc:
            raise TokenizerError(f"cannot build a tiktoken encoding from {path}: {exc}") from exc

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Special token string -> id."""
        return dict(self._special)

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        """Ids of `text` (special-token strings in it become their ids) with `bos` BOS and `eos` EOS ids."""
        ids = self._encoding.encode(text, allowed_special="all") if text else []
        return self._frame(ids, bos, eos)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens are dropped unless `skip_special_tokens` is False."""
        values = self._checked(ids)
        if skip_special_tokens:
            values = [i for i in values if i not in self._special_ids]
        return self._encoding.decode(values, errors="replace")

    def byte_vocabulary(self) -> tuple[list[bytes], frozenset[int]]:
        """Each id's bytes (a special token's own text) and the special ids, for constrained decoding."""
        table = [bytes(self._encoding.decode_single_token_bytes(i)) for i in range(self._vocab_size)]
        return table, self._special_ids

    def __repr__(self) -> str:
        return f"TiktokenTokenizer(source={self._source!r}, vocab_size={self._vocab_size})"


class TiktokenLoader:
    """Loads tiktoken BPE files: a file whose first non-empty line is `<base64> <int>`."""

    name = "tiktoken"

    def can_load(self, path: Path) -> bool:
        """Whether `path` is a file whose first non-empty line is `<base64> <int>`."""
        if not path.is_file():
            return False
        for line in read_head(path).splitlines():
            if line.strip():
                return _LINE.match(line.strip()) is not None
        return False

    def load(self, path: Path) -> TiktokenTokenizer:
        """Load the tiktoken file at `path` with Llama 3's pattern and special tokens."""
        return TiktokenTokenizer.from_file(path)
