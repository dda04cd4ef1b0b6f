"""SentencePiece `.model` tokenizers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmcore.errors import TokenizerError
from mmcore_text._common import TokenizerBase, require_file

if TYPE_CHECKING:
    import sentencepiece

__all__ = ["SentencePieceTokenizer", "SentencePieceLoader"]


class SentencePieceTokenizer(TokenizerBase):
    """A SentencePiece model; BOS/EOS are the model's own (`<s>`/`</s>` usually)."""

    def __init__(self, processor: sentencepiece.SentencePieceProcessor, *, source: str = "sentencepiece") -> None:
        self._sp = processor
        bos = int(processor.bos_id())
        eos = int(processor.eos_id())
        self._set_ids(
            bos_id=bos if bos >= 0 else None,
            eos_id=eos if eos >= 0 else None,
            vocab_size=int(processor.get_piece_size()),
            source=source,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SentencePieceTokenizer:
        """Load a SentencePiece `.model` file."""
        import sentencepiece  # imported with the first SentencePiece model

        target = require_file(Path(path), "SentencePiece .model")
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.Load(str(target))
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(
                f"cannot load SentencePiece model {target}: {exc}; expected a model file written by "
                "sentencepiece.SentencePieceTrainer"
            ) from exc
        return cls(processor, source=str(target))

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        """Ids of `text` with `bos` BOS and `eos` EOS ids."""
        ids = [int(i) for i in self._sp.encode(text, out_type=int)] if text else []
        return self._frame(ids, bos, eos)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; control tokens (`<s>`, `</s>`) appear as their pieces if not skipped."""
        values = self._checked(ids)
        if skip_special_tokens:
            return str(self._sp.decode([i for i in values if not self._sp.is_control(i)]))
        parts: list[str] = []
        run: list[int] = []
        for i in values:
            if self._sp.is_control(i):
                if run:
                    parts.append(str(self._sp.decode(run)))
                    run = []
                parts.append(str(self._sp.id_to_piece(i)))
            else:
                run.append(i)
        if run:
            parts.append(str(self._sp.decode(run)))
        return "".join(parts)

    def byte_vocabulary(self) -> tuple[list[bytes], frozenset[int]]:
        """Each id's bytes as they appear inside a text (``▁`` as a space, ``<0xNN>`` byte pieces as
        their byte, a control token's own piece) and the control/unknown ids, for constrained decoding."""
        table: list[bytes] = []
        special: set[int] = set()
        for i in range(self._vocab_size):
            piece = str(self._sp.id_to_piece(i))
            if self._sp.is_control(i) or self._sp.is_unknown(i):
                special.add(i)
                table.append(piece.encode("utf-8"))
            elif self._sp.is_byte(i):
                table.append(bytes([int(piece[3:5], 16)]))
            else:
                table.append(piece.replace("\u2581", " ").encode("utf-8"))
        return table, frozenset(special)

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(source={self._source!r}, vocab_size={self._vocab_size})"


class SentencePieceLoader:
    """Loads SentencePiece `.model` files."""

    name = "sentencepiece"

    def can_load(self, path: Path) -> bool:
        """A file ending in `.model`."""
        return path.is_file() and path.suffix.lower() == ".model"

    def load(self, path: Path) -> SentencePieceTokenizer:
        """Load the SentencePiece model at `path`."""
        return SentencePieceTokenizer.from_file(path)
