"""llama2.c `tokenizer.bin` files: score-ordered BPE over a SentencePiece-derived vocabulary.

Two headers are read: llama2.c's own (`int32 max_token_length`, BOS 1, EOS 2, vocabulary size = number of
records) and ExecuTorch's (`int32 vocab_size, bos, eos, max_token_length`). Each record is
`float32 score, int32 length, bytes`.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmcore.errors import TokenizerError
from mmcore_text._common import TokenizerBase, require_file

__all__ = ["Llama2cTokenizer", "Llama2cLoader", "Llama2cVocab", "read_llama2c_vocab"]

logger = logging.getLogger(__name__)

_BOS = 1
_EOS = 2
_BYTE_OFFSET = 3  # ids 0..2 are <unk>, <s>, </s>; byte b is id b + 3
_MAX_TOKEN_LENGTH = 1 << 16
_MIN_SCORE = -1e10  # as llama2.c: pairs scoring this or lower never merge
_BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True)
class Llama2cVocab:
    """The contents of a `tokenizer.bin`."""

    pieces: tuple[bytes, ...]
    scores: tuple[float, ...]
    bos_id: int
    eos_id: int
    vocab_size: int
    max_token_length: int


def _records(data: bytes, offset: int, limit: int | None, max_len: int) -> tuple[list[bytes], list[float]] | None:
    """Records from `offset` to the end of `data`, or None if they do not fill it exactly."""
    pieces: list[bytes] = []
    scores: list[float] = []
    while offset < len(data):
        if limit is not None and len(pieces) >= limit:
            return None
        if offset + 8 > len(data):
            return None
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        if length < 0 or length > max_len or offset + length > len(data):
            return None
        pieces.append(data[offset : offset + length])
        scores.append(score)
        offset += length
    return pieces, scores


def read_llama2c_vocab(path: str | os.PathLike[str]) -> Llama2cVocab:
    """Parse a llama2.c or ExecuTorch `tokenizer.bin`; `TokenizerError` if it is neither."""
    target = require_file(Path(path), "llama2.c tokenizer.bin")
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"cannot read llama2.c tokenizer {target}: {exc}") from exc
    if len(data) >= 16:
        vocab, bos, eos, max_len = struct.unpack_from("<4i", data, 0)
        if 0 < vocab and 0 <= bos < vocab and 0 <= eos < vocab and 0 < max_len <= _MAX_TOKEN_LENGTH:
            parsed = _records(data, 16, vocab, max_len)
            if parsed is not None and parsed[0]:
                pieces, scores = parsed
                padding = vocab - len(pieces)  # the C++ tokenizer pads missing records with "<pad>"
                return Llama2cVocab(
                    tuple(pieces) + (b"<pad>",) * padding,
                    tuple(scores) + (0.0,) * padding,
                    bos,
                    eos,
                    vocab,
                    max_len,
                )
    if len(data) >= 4:
        (max_len,) = struct.unpack_from("<i", data, 0)
        if 0 < max_len <= _MAX_TOKEN_LENGTH:
            parsed = _records(data, 4, None, max_len)
            if parsed is not None and len(parsed[0]) > _EOS:
                pieces, scores = parsed
                return Llama2cVocab(tuple(pieces), tuple(scores), _BOS, _EOS, len(pieces), max_len)
    raise TokenizerError(
        f"{target} is not a llama2.c tokenizer.bin: expected an int32 max_token_length header (or ExecuTorch's "
        "int32 vocab_size, bos, eos, max_token_length) followed by (float32 score, int32 length, bytes) records "
        "filling the file"
    )


class Llama2cTokenizer(TokenizerBase):
    """llama2.c's tokenizer: a dummy-prefix space, per-character lookup with byte fallback, merges by score."""

    def __init__(self, vocab: Llama2cVocab, *, source: str = "llama2c") -> None:
        self._vocab = vocab
        self._set_ids(bos_id=vocab.bos_id, eos_id=vocab.eos_id, vocab_size=vocab.vocab_size, source=source)
        self._lookup: dict[bytes, int] = {}
        for i, piece in enumerate(vocab.pieces):
            self._lookup.setdefault(piece, i)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Llama2cTokenizer:
        """Load a `tokenizer.bin`."""
        return cls(read_llama2c_vocab(path), source=str(path))

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        """Ids of `text` with `bos` BOS and `eos` EOS ids."""
        ids = self._merge(self._initial_ids(text)) if text else []
        return self._frame(ids, bos, eos)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; a piece right after BOS (or first) loses its leading space, `<0xNN>` pieces are bytes."""
        out = bytearray()
        prev = self._vocab.bos_id
        specials = {self._vocab.bos_id, self._vocab.eos_id}
        for token in self._checked(ids):
            piece = self._vocab.pieces[token]
            if prev == self._vocab.bos_id and piece.startswith(b" "):
                piece = piece[1:]
            prev = token
            if skip_special_tokens and token in specials:
                continue
            byte = _BYTE_PIECE.fullmatch(piece)
            out += bytes([int(byte.group(1), 16)]) if byte else piece
        return out.decode("utf-8", errors="replace")

    def byte_vocabulary(self) -> tuple[list[bytes], frozenset[int]]:
        """Each id's bytes inside a text (``<0xNN>`` pieces as their byte) and the ids of ``<unk>``,
        BOS and EOS, for constrained decoding."""
        table = []
        for piece in self._vocab.pieces:
            byte = _BYTE_PIECE.fullmatch(piece)
            table.append(bytes([int(byte.group(1), 16)]) if byte else piece)
        return table, frozenset({0, self._vocab.bos_id, self._vocab.eos_id})

    def _initial_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for char in " " + text:  # llama2.c's dummy prefix
            encoded = char.encode("utf-8", errors="replace")
            found = self._lookup.get(encoded)
            if found is not None:
                ids.append(found)
            else:
                ids.extend(b + _BYTE_OFFSET for b in encoded)
        return ids

    def _merge(self, ids: list[int]) -> list[int]:
        """Merge the best-scoring adjacent pair (leftmost on ties) until no pair is in the vocabulary.

        Same result as llama2.c's repeated full scan, in O(n log n): symbols form a linked list, candidate
        pairs sit in a heap keyed by (-score, position of the left symbol), and stale candidates are skipped.
        """
        if len(ids) < 2:
            return ids
        pieces = self._vocab.pieces
        scores = self._vocab.scores
        symbols = list(ids)
        nxt = [*range(1, len(ids)), -1]
        prv = list(range(-1, len(ids) - 1))
        version = [0] * len(ids)
        heap: list[tuple[float, int, int, int, int, int]] = []

        def push(left: int) -> None:
            right = nxt[left] if left >= 0 else -1
            if left < 0 or right < 0:
                return
            merged = self._lookup.get(pieces[symbols[left]] + pieces[symbols[right]])
            if merged is not None and scores[merged] > _MIN_SCORE:
                heapq.heappush(heap, (-scores[merged], left, right, version[left], version[right], merged))

        for index in range(len(ids) - 1):
            push(index)
        while heap:
            _, left, right, left_version, right_version, merged = heapq.heappop(heap)
            if nxt[left] != right or version[left] != left_version or version[right] != right_version:
                continue
            symbols[left] = merged
            version[left] += 1
            version[right] = -1  # removed
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            push(prv[left])
            push(left)
        out: list[int] = []
        node = 0
        while node >= 0:
            out.append(symbols[node])
            node = nxt[node]
        return out

    def __repr__(self) -> str:
        return f"Llama2cTokenizer(source={self._source!r}, vocab_size={self._vocab.vocab_size})"


class Llama2cLoader:
    """Loads llama2.c `tokenizer.bin` files."""

    name = "llama2c"

    def can_load(self, path: Path) -> bool:
        """A file ending in `.bin`."""
        return path.is_file() and path.suffix.lower() == ".bin"

    def load(self, path: Path) -> Llama2cTokenizer:
        """Load the llama2.c tokenizer at `path`."""
        return Llama2cTokenizer.from_file(path)
