"""Hugging Face `tokenizer.json` tokenizers, with BOS/EOS found as ExecuTorch's C++ runner finds them."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tokenizers

from mmcore.errors import TokenizerError
from mmcore_text._common import TokenizerBase, require_file

__all__ = ["HFTokenizer", "HFTokenizerLoader", "HFJsonFallbackLoader"]

logger = logging.getLogger(__name__)

_TOKENIZER_JSON = "tokenizer.json"
# Read in this order; the first file naming a token wins (as in the C++ HFTokenizer).
_CONFIG_FILES = ("special_tokens_map.json", "tokenizer_config.json")
_GENERATION_CONFIG = "generation_config.json"


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode alphabet, inverted: the character a byte-level BPE uses -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTE_DECODER = _byte_decoder()
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # a SentencePiece-style byte-fallback piece


class HFTokenizer(TokenizerBase):
    """A `tokenizers.Tokenizer` that adds exactly the BOS/EOS ids asked for and no other special tokens."""

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        *,
        bos_id: int | None,
        eos_id: int | None,
        extra_eos_ids: Iterable[int] = (),
        source: str = "HFTokenizer",
    ) -> None:
        self._tokenizer = tokenizer
        self._bytes: list[bytes] | None = None  # per-token bytes, built on first streamed token
        self._special_ids: frozenset[int] = frozenset()
        if not isinstance(tokenizer.decoder, tokenizers.decoders.ByteLevel):
            self.token_bytes = None  # type: ignore[assignment,method-assign]  # no byte-level fast path
        # Computing the size builds the whole vocabulary; it is read on every decode, so keep it.
        vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self._set_ids(bos_id=bos_id, eos_id=eos_id, vocab_size=vocab_size, source=source, extra_eos_ids=extra_eos_ids)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> HFTokenizer:
        """Load a `tokenizer.json` file, or a directory holding one and optionally its config files.

        BOS/EOS come from `special_tokens_map.json` / `tokenizer_config.json` and extra EOS ids from
        `generation_config.json` when `path` is a directory; otherwise (or when those name no usable
        token) from the added token whose content uniquely contains "bos"/"begin" or "eos"/"end".
        """
        target = Path(path)
        configs: dict[str, dict[str, Any]] = {}
        if target.is_dir():
            json_path = target / _TOKENIZER_JSON
            if not json_path.is_file():
                raise TokenizerError(
                    f"tokenizer directory {target} holds no {_TOKENIZER_JSON}; pass a tokenizer.json file "
                    "or a directory holding one"
                )
            for name in (*_CONFIG_FILES, _GENERATION_CONFIG):
                content = _read_config(target / name)
                if content is not None:
                    configs[name] = content
        else:
            json_path = require_file(target, "Hugging Face tokenizer.json")
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(json_path))
        except Exception as exc:
            raise TokenizerError(
                f"cannot load Hugging Face tokenizer {json_path}: {exc}; expected a tokenizer.json "
                "written by the `tokenizers` library (tokenizer.save(path))"
            ) from exc
        bos_id, eos_id = _resolve_special_ids(tokenizer, configs, json_path)
        extra = _generation_eos_ids(configs.get(_GENERATION_CONFIG), target / _GENERATION_CONFIG)
        if eos_id is None and extra:
            eos_id = extra[0]
        logger.debug("loaded %s: bos=%s eos=%s extra eos=%s", json_path, bos_id, eos_id, sorted(extra))
        return cls(tokenizer, bos_id=bos_id, eos_id=eos_id, extra_eos_ids=extra, source=str(target))

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tokenizer

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        """Ids of `text` (special-token strings in it become their ids) with `bos` BOS and `eos` EOS ids."""
        ids = list(self._tokenizer.encode(text, add_special_tokens=False).ids) if text else []
        return self._frame(ids, bos, eos)

    def token_bytes(self, token: int, *, skip_special_tokens: bool = True) -> bytes:
        """The bytes one token contributes to decoded text (byte-level tokenizers only; see
        `mmcore.tokenizer`). Special tokens give b"" when skipped, their text otherwise."""
        table = self._byte_table()
        if not 0 <= token < len(table):
            self._checked([token])
        if skip_special_tokens and token in self._special_ids:
            return b""
        return table[token]

    def _byte_table(self) -> list[bytes]:
        if self._bytes is None:
            added = self._tokenizer.get_added_tokens_decoder()
            self._special_ids = frozenset(i for i, t in added.items() if t.special)
            table = []
            for i in range(self._vocab_size):
                piece = self._tokenizer.id_to_token(i) or ""
                if i in added:
                    table.append(added[i].content.encode("utf-8"))
                else:
                    table.append(bytes(_BYTE_DECODER.get(c, 0) for c in piece))
            self._bytes = table
        return self._bytes

    def byte_vocabulary(self) -> tuple[list[bytes], frozenset[int]]:
        """Each id's bytes as they appear inside a text (a special token's own text) and the special
        ids; what constrained decoding builds its token trie from. Byte-level vocabularies map their
        stand-in characters back to bytes; SentencePiece-style ones turn ``▁`` into a space and
        ``<0xNN>`` pieces into their byte."""
        added = self._tokenizer.get_added_tokens_decoder()
        special = frozenset(i for i, t in added.items() if t.special)
        if isinstance(self._tokenizer.decoder, tokenizers.decoders.ByteLevel):
            return list(self._byte_table()), special
        table = []
        for i in range(self._vocab_size):
            if i in added:
                table.append(added[i].content.encode("utf-8"))
                continue
            piece = self._tokenizer.id_to_token(i) or ""
            byte = _BYTE_PIECE.fullmatch(piece)
            table.append(bytes([int(byte.group(1), 16)]) if byte else piece.replace("\u2581", " ").encode("utf-8"))
        return table, special

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens are dropped unless `skip_special_tokens` is False."""
        values = self._checked(ids)
        return str(self._tokenizer.decode(values, skip_special_tokens=skip_special_tokens))

    def __repr__(self) -> str:
        return f"HFTokenizer(source={self._source!r}, vocab_size={self.vocab_size}, bos_id={self._bos_id})"


class HFTokenizerLoader:
    """Loads `tokenizer.json` files and directories holding one."""

    name = "hf"

    def can_load(self, path: Path) -> bool:
        """A file named tokenizer.json, or a directory holding one."""
        if path.is_dir():
            return (path / _TOKENIZER_JSON).is_file()
        return path.is_file() and path.name == _TOKENIZER_JSON

    def load(self, path: Path) -> HFTokenizer:
        """Load the Hugging Face tokenizer at `path`."""
        return HFTokenizer.from_path(path)


class HFJsonFallbackLoader:
    """Tries any other `.json` file as a Hugging Face tokenizer, after every other loader."""

    name = "hf-json"

    def can_load(self, path: Path) -> bool:
        """Any `.json` file."""
        return path.is_file() and path.suffix.lower() == ".json"

    def load(self, path: Path) -> HFTokenizer:
        """Load `path` as a Hugging Face tokenizer."""
        return HFTokenizer.from_path(path)


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(
            f"cannot read tokenizer config {path}: {exc}; fix or remove the file (it names BOS/EOS tokens)"
        ) from exc
    if not isinstance(content, dict):
        raise TokenizerError(
            f"tokenizer config {path} holds a {type(content).__name__}, expected a JSON object; fix or remove the file"
        )
    return content


def _token_content(value: object) -> str | None:
    """A config's token entry: a string, or a dict with a "content" string (AddedToken form)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        content = value.get("content")
        if isinstance(content, str) and content:
            return content
    return None


def _configured_id(tokenizer: tokenizers.Tokenizer, configs: Mapping[str, Mapping[str, Any]], key: str) -> int | None:
    for name in _CONFIG_FILES:
        config = configs.get(name)
        if config is None or key not in config:
            continue
        content = _token_content(config[key])
        if content is None:
            continue
        token_id = tokenizer.token_to_id(content)
        if token_id is None:
            logger.warning("%s names %s %r, which is not in the vocabulary; ignoring it", name, key, content)
            continue
        return int(token_id)
    return None


def _guess_id(added: Mapping[int, str], needles: tuple[str, ...], role: str, source: Path) -> int | None:
    """The unique added token containing one of `needles`, narrowed by "text" when several do."""
    candidates = {i: c for i, c in added.items() if any(n in c for n in needles)}
    if len(candidates) > 1:
        narrowed = {i: c for i, c in candidates.items() if "text" in c}
        if narrowed:
            candidates = narrowed
    if len(candidates) == 1:
        return next(iter(candidates))
    logger.debug(
        "%s: no unique %s token among added tokens (candidates: %s); %s left unset",
        source,
        role,
        sorted(candidates.values()),
        role,
    )
    return None


def _resolve_special_ids(
    tokenizer: tokenizers.Tokenizer, configs: Mapping[str, Mapping[str, Any]], source: Path
) -> tuple[int | None, int | None]:
    bos_id = _configured_id(tokenizer, configs, "bos_token")
    eos_id = _configured_id(tokenizer, configs, "eos_token")
    if bos_id is None or eos_id is None:
        added = {int(i): t.content for i, t in tokenizer.get_added_tokens_decoder().items()}
        if bos_id is None:
            bos_id = _guess_id(added, ("bos", "begin"), "BOS", source)
        if eos_id is None:
            eos_id = _guess_id(added, ("eos", "end"), "EOS", source)
    return bos_id, eos_id


def _generation_eos_ids(config: Mapping[str, Any] | None, source: Path) -> list[int]:
    if config is None:
        return []
    value = config.get("eos_token_id")
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    ids = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    if len(ids) != len(values):
        logger.warning("%s: eos_token_id %r holds non-id values; using %s", source, value, ids)
    return ids
