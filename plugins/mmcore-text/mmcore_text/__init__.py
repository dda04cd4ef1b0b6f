"""mmcore-text: the text modality and tokenizer loaders (Hugging Face, Tekken, tiktoken, SentencePiece, llama2.c)."""

from __future__ import annotations

import os
from pathlib import Path

from mmcore import hookimpl
from mmcore.errors import TokenizerError
from mmcore.registry import ModalityRegistrar, TokenizerRegistrar
from mmcore.tokenizer import Tokenizer, TokenizerLoader
from mmcore_text.handler import TextHandler, TextInput
from mmcore_text.hf import HFJsonFallbackLoader, HFTokenizer, HFTokenizerLoader
from mmcore_text.llama2c import Llama2cLoader, Llama2cTokenizer
from mmcore_text.spm import SentencePieceLoader, SentencePieceTokenizer
from mmcore_text.tekken import TekkenLoader, TekkenTokenizer
from mmcore_text.tiktoken_file import TiktokenLoader, TiktokenTokenizer

__all__ = [
    "HFTokenizer",
    "Llama2cTokenizer",
    "SentencePieceTokenizer",
    "TekkenTokenizer",
    "TextHandler",
    "TextInput",
    "TiktokenTokenizer",
    "load",
    "loaders",
]

__version__ = "0.1.0"


def loaders() -> list[tuple[TokenizerLoader, bool]]:
    """This package's tokenizer loaders in the order they are tried, each with its `fallback` flag."""
    return [
        (HFTokenizerLoader(), False),
        (TiktokenLoader(), False),
        (SentencePieceLoader(), False),
        (Llama2cLoader(), False),
        (TekkenLoader(), False),
        (HFJsonFallbackLoader(), True),
    ]


def load(path: str | os.PathLike[str]) -> Tokenizer:
    """Load the tokenizer at `path` with the first of this package's loaders that recognises it."""
    target = Path(path)
    if not target.exists():
        raise TokenizerError(f"tokenizer path {target} does not exist; pass an existing file or directory")
    for loader, _ in loaders():
        if loader.can_load(target):
            return loader.load(target)
    raise TokenizerError(
        f"no mmcore-text loader recognises {target}; expected a tokenizer.json or a directory holding one, "
        "a tiktoken file, a SentencePiece .model or a llama2.c tokenizer.bin"
    )


@hookimpl
def mmcore_register_modalities(registry: ModalityRegistrar) -> None:
    """Register the text handler (`str`, `TextInput`)."""
    registry.add(TextHandler())


@hookimpl
def mmcore_register_tokenizers(registry: TokenizerRegistrar) -> None:
    """Register the loaders: Hugging Face, tiktoken, SentencePiece, llama2.c, Tekken, then any `.json` as fallback."""
    for loader, fallback in loaders():
        registry.add(loader, fallback=fallback)
