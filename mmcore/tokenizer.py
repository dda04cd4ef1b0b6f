"""The tokenizer protocol the core sees; tokenizers themselves come from plugins (mmcore-text)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mmcore.errors import TokenizerError

if TYPE_CHECKING:
    from mmcore.plugins import PluginManager

__all__ = ["Tokenizer", "TokenizerLoader", "load_tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """Encodes text to ids and decodes ids to text."""

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id, if the tokenizer has one."""

    @property
    def eos_ids(self) -> frozenset[int]:
        """Ids that end a sequence (may be empty)."""

    @property
    def vocab_size(self) -> int:
        """Number of ids, regular and special tokens together."""

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        """Ids of `text` with exactly `bos` BOS ids before and `eos` EOS ids after."""

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of a sequence of ids (may end in U+FFFD when a character is cut off)."""


# Optional: a tokenizer whose decoding is the concatenation of per-token bytes may also offer
# `token_bytes(id, *, skip_special_tokens: bool) -> bytes`; streaming then costs one lookup per token
# instead of re-decoding a window of ids.
# A tokenizer may also offer `byte_vocabulary() -> (list[bytes], frozenset[int])`: each id's bytes as
# they appear inside a text and the special ids; constrained decoding (mmcore.structured) needs it.


@runtime_checkable
class TokenizerLoader(Protocol):
    """Recognises and loads one family of tokenizer files."""

    name: str

    def can_load(self, path: Path) -> bool:
        """Whether `path` (a file or a directory) looks like this loader's format."""

    def load(self, path: Path) -> Tokenizer:
        """Load the tokenizer at `path`; raise `TokenizerError` with the reason if it fails."""


def load_tokenizer(path: str | os.PathLike[str], *, plugin_manager: PluginManager | None = None) -> Tokenizer:
    """Load a tokenizer with the first registered loader that recognises `path`."""
    from mmcore.plugins import get_plugin_manager

    pm = plugin_manager or get_plugin_manager()
    target = Path(path)
    if not target.exists():
        raise TokenizerError(f"tokenizer path {target} does not exist")
    loaders = pm.tokenizer_loaders()
    if not loaders:
        raise TokenizerError(
            f"no tokenizer loader is installed, so {target} cannot be loaded "
            "(install mmcore-text: pip install mmcore-text)"
        )
    for loader in loaders:
        if loader.can_load(target):
            return loader.load(target)
    names = ", ".join(loader.name for loader in loaders)
    raise TokenizerError(
        f"no installed tokenizer loader recognises {target} (tried: {names}); expected a "
        "tokenizer.json or a directory holding one, a tiktoken file, a SentencePiece .model or a "
        "llama2.c tokenizer.bin"
    )
