"""The demo model's tokenizer: a byte-level BPE over its closed vocabulary, one token per word."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mmcore.demo_model.constants import ANSWER_WORDS, BOS_TOKEN, EOS_TOKEN, QUESTIONS, SPECIAL_TOKENS

__all__ = ["TOKENIZER_DIR", "load_tokenizer", "train_tokenizer", "write_tokenizer"]

logger = logging.getLogger(__name__)

#: The committed tokenizer directory (``tokenizer.json`` + ``tokenizer_config.json``).
TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
_VOCAB_LIMIT = 256


def _corpus() -> Iterator[str]:
    """Every prompt and every answer word, at the start of a text and after a space."""
    yield from QUESTIONS.values()
    for word in ANSWER_WORDS:
        yield word
        yield f"a {word}"


def train_tokenizer() -> Tokenizer:
    """Train the tokenizer in memory (deterministic); every question and answer word is one token."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_LIMIT, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=[], show_progress=False
    )
    tok.train_from_iterator(list(_corpus()), trainer=trainer)
    for index, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != index:
            raise RuntimeError(f"special token {name!r} got id {tok.token_to_id(name)}, expected {index}")
    for text in (*QUESTIONS.values(), *(f"a {w}" for w in ANSWER_WORDS)):
        words = len(text.replace("?", " ?").replace(".", " .").split())
        if len(tok.encode(text, add_special_tokens=False).ids) != words:
            raise RuntimeError(f"{text!r} does not encode to one token per word")
    return tok


def _config() -> dict[str, object]:
    """Contents of ``tokenizer_config.json``."""
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 128,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def write_tokenizer(directory: Path = TOKENIZER_DIR) -> Path:
    """Train the tokenizer and write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``."""
    tok = train_tokenizer()
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"), pretty=True)
    (directory / "tokenizer_config.json").write_text(json.dumps(_config(), indent=2, sort_keys=True) + "\n")
    logger.info("wrote a %d-token tokenizer to %s", tok.get_vocab_size(), directory)
    return directory


def load_tokenizer(directory: Path = TOKENIZER_DIR) -> Tokenizer:
    """The tokenizer saved in ``directory``."""
    return Tokenizer.from_file(str(directory / "tokenizer.json"))
