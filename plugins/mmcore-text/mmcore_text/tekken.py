"""Mistral Tekken tokenizers (`tekken.json`): tiktoken-style BPE with control tokens numbered first."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmcore.errors import TokenizerError
from mmcore_text._common import TokenizerBase, require_file

__all__ = ["TekkenTokenizer", "TekkenLoader"]

_TEKKEN_JSON = "tekken.json"
_BOS, _EOS = "<s>", "</s>"


class TekkenTokenizer(TokenizerBase):
    """A `tekken.json` tokenizer: control tokens take ids ``0..n_special-1``, a regular token of rank r
    takes ``n_special + r``.

    Control-token strings in the text (``[INST]``, ``[AUDIO]``) become their ids. Single-byte
    tokens may be partial UTF-8; `decode` replaces incomplete characters with U+FFFD.
    """

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        specials: Sequence[str],
        *,
        pattern: str,
        source: str = "tekken",
    ) -> None:
        self._n_special = len(specials)
        import tiktoken  # imported with the first tiktoken encoding

        self._encoding = tiktoken.Encoding(
            Path(source).stem or "tekken", pat_str=pattern, mergeable_ranks=dict(ranks), special_tokens={}
        )
        self._specials = {token: i for i, token in enumerate(specials)}
        self._special_names = tuple(specials)
        self._set_ids(
            bos_id=self._specials.get(_BOS),
            eos_id=self._specials.get(_EOS),
            vocab_size=self._n_special + len(ranks),
            source=source,
        )
        named = sorted((t for t in self._specials if t), key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in named) + ")") if named else None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> TekkenTokenizer:
        """Load `tekken.json`, or a directory holding one."""
        target = Path(path)
        file = target / _TEKKEN_JSON if target.is_dir() else target
        file = require_file(file, "Tekken tekken.json")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            config = data["config"]
            n_special = int(config.get("default_num_special_tokens", len(data.get("special_tokens", []))))
            vocab_size = int(config.get("default_vocab_size", n_special + len(data["vocab"])))
            n_regular = vocab_size - n_special
            ranks = {
                base64.b64decode(v["token_bytes"]): int(v["rank"]) for v in data["vocab"] if int(v["rank"]) < n_regular
            }
            specials = _special_names(data.get("special_tokens", []), n_special)
            pattern = str(config["pattern"])
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            binascii.Error,
        ) as exc:
            raise TokenizerError(
                f"cannot load Tekken tokenizer {file}: {type(exc).__name__}: {exc}; expected a tekken.json with "
                "'config' (pattern, default_num_special_tokens, default_vocab_size), 'vocab' and 'special_tokens'"
            ) from exc
        if len(ranks) != n_regular:
            raise TokenizerError(
                f"Tekken tokenizer {file}: config.default_vocab_size={vocab_size} needs {n_regular} regular tokens "
                f"after {n_special} special ones, but 'vocab' holds {len(ranks)} distinct ones; fix the file"
            )
        try:
            return cls(ranks, specials, pattern=pattern, source=str(file))
        except ValueError as exc:
            raise TokenizerError(f"cannot build the Tekken encoding of {file}: {exc}") from exc

    @property
    def num_special_tokens(self) -> int:
        return self._n_special

    def special_id(self, token: str) -> int | None:
        """The id of control token `token` (e.g. ``"[AUDIO]"``), if it exists."""
        return self._specials.get(token)

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        """Ids of `text` (control-token strings in it become their ids) with `bos` BOS and `eos` EOS ids."""
        ids: list[int] = []
        pieces = self._split.split(text) if self._split is not None else [text]
        for index, piece in enumerate(pieces):
            if not piece:
                continue
            if index % 2:  # a control token matched by the split pattern
                ids.append(self._specials[piece])
            else:
                ids.extend(self._n_special + i for i in self._encoding.encode_ordinary(piece))
        return self._frame(ids, bos, eos)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; control tokens are dropped unless `skip_special_tokens` is False."""
        values = self._checked(ids)
        out = bytearray()
        for i in values:
            if i < self._n_special:
                if not skip_special_tokens:
                    out += self._special_names[i].encode("utf-8")
            else:
                out += self._encoding.decode_single_token_bytes(i - self._n_special)
        return out.decode("utf-8", errors="replace")

    def byte_vocabulary(self) -> tuple[list[bytes], frozenset[int]]:
        """Each id's bytes (a control token's own name) and the control ids, for constrained decoding."""
        table = [name.encode("utf-8") for name in self._special_names]
        table += [
            bytes(self._encoding.decode_single_token_bytes(i)) for i in range(self._vocab_size - self._n_special)
        ]
        return table, frozenset(range(self._n_special))

    def __repr__(self) -> str:
        return f"TekkenTokenizer(source={self._source!r}, vocab_size={self._vocab_size})"


class TekkenLoader:
    """Loads `tekken.json` files and directories holding one (and no `tokenizer.json`)."""

    name = "tekken"

    def can_load(self, path: Path) -> bool:
        """A file named tekken.json, or a directory holding one."""
        if path.is_dir():
            return (path / _TEKKEN_JSON).is_file()
        return path.is_file() and path.name == _TEKKEN_JSON

    def load(self, path: Path) -> TekkenTokenizer:
        """Load the Tekken tokenizer at `path`."""
        return TekkenTokenizer.from_path(path)


def _special_names(entries: Any, n_special: int) -> list[str]:
    """Control token strings by id; ids the file leaves out get ``<SPECIAL_i>`` (as mistral-common)."""
    names = [f"<SPECIAL_{i}>" for i in range(n_special)]
    for entry in entries:
        rank = int(entry["rank"])
        if 0 <= rank < n_special:
            names[rank] = str(entry["token_str"])
    return names
