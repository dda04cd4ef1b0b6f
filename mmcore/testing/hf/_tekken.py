"""A tiny Mistral Tekken tokenizer file (``tekken.json``) and a pure-Python encoder for it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken
from tokenizers import Tokenizer

from mmcore.testing.hf._family import NEVER_TOKEN

__all__ = ["TEKKEN_PATTERN", "TEKKEN_SPECIALS", "TekkenText", "write_tekken"]

#: Tekken's pre-tokenizer pattern without the ``\s+(?!\S)`` look-ahead, so RE2 (C++) and Python split alike.
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+"
)

_NAMED: dict[int, str] = {
    0: "<unk>",
    1: "<s>",
    2: "</s>",
    3: "[INST]",
    4: "[/INST]",
    11: "<pad>",
    17: "[SYSTEM_PROMPT]",
    18: "[/SYSTEM_PROMPT]",
    24: "[AUDIO]",
    25: "[BEGIN_AUDIO]",
    26: "[TRANSCRIBE]",
    31: NEVER_TOKEN,
}
_N_SPECIAL = 32
#: Control tokens in id order; ``[AUDIO]`` = 24 and ``[BEGIN_AUDIO]`` = 25 as transformers' Voxtral assumes.
TEKKEN_SPECIALS: tuple[str, ...] = tuple(_NAMED.get(i, f"<SPECIAL_{i}>") for i in range(_N_SPECIAL))

# GPT-2 byte-level alphabet: the printable stand-in character of each byte.
_BYTE_CHARS = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]


def _byte_decoder() -> dict[str, int]:
    """Map each byte-level stand-in character back to its byte."""
    table: dict[str, int] = {}
    extra = 0
    for b in range(256):
        if b in _BYTE_CHARS:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _ranked_tokens(bpe: Tokenizer) -> list[bytes]:
    """All 256 single bytes (ranks 0-255), then the merged tokens of ``bpe`` in merge order."""
    model = json.loads(bpe.to_str())["model"]
    to_byte = _byte_decoder()
    tokens = [bytes([b]) for b in range(256)]
    seen = set(tokens)
    for merge in model["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ")
        merged = bytes(to_byte[c] for c in left + right)
        if merged not in seen:
            seen.add(merged)
            tokens.append(merged)
    return tokens


def write_tekken(path: Path, bpe: Tokenizer, audio: dict[str, Any]) -> int:
    """Write ``tekken.json`` with merges taken from ``bpe``; return its total vocabulary size."""
    tokens = _ranked_tokens(bpe)
    vocab = [
        {
            "rank": rank,
            "token_bytes": base64.b64encode(tok).decode("ascii"),
            "token_str": tok.decode("utf-8") if tok.isascii() else None,
        }
        for rank, tok in enumerate(tokens)
    ]
    size = _N_SPECIAL + len(tokens)
    data = {
        "config": {
            "pattern": TEKKEN_PATTERN,
            "num_vocab_tokens": len(tokens),
            "default_vocab_size": size,
            "default_num_special_tokens": _N_SPECIAL,
            "version": "v7",
        },
        "vocab": vocab,
        "special_tokens": [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(TEKKEN_SPECIALS)],
        "audio": audio,
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    return size


@dataclass(frozen=True)
class TekkenText:
    """Encodes and decodes the regular (non-control) text of a ``tekken.json`` file."""

    encoding: tiktoken.Encoding
    n_special: int
    specials: tuple[str, ...]

    @classmethod
    def from_file(cls, path: Path) -> TekkenText:
        """Load ``tekken.json``."""
        data = json.loads(path.read_text())
        n_special = int(data["config"]["default_num_special_tokens"])
        ranks = {base64.b64decode(v["token_bytes"]): int(v["rank"]) for v in data["vocab"]}
        enc = tiktoken.Encoding(
            name=path.stem, pat_str=data["config"]["pattern"], mergeable_ranks=ranks, special_tokens={}
        )
        specials = tuple(t["token_str"] for t in sorted(data["special_tokens"], key=lambda t: t["rank"]))
        return cls(enc, n_special, specials)

    @property
    def vocab_size(self) -> int:
        """Control plus regular tokens."""
        return self.n_special + int(self.encoding.n_vocab)

    def special_id(self, name: str) -> int:
        """Id of the control token ``name``."""
        return self.specials.index(name)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` as plain text (no control tokens)."""
        return [self.n_special + i for i in self.encoding.encode_ordinary(text)]

    def piece(self, token_id: int) -> bytes:
        """The bytes of one id (a control token's name for control ids)."""
        if token_id < self.n_special:
            return self.specials[token_id].encode("utf-8")
        return bytes(self.encoding.decode_single_token_bytes(token_id - self.n_special))
