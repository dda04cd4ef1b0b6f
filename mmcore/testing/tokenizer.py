"""A tiny deterministic byte-level BPE tokenizer trained offline."""

from __future__ import annotations

import json
import logging
import random
import string
from collections.abc import Iterator
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from mmcore.testing._files import atomic_dir, default_cache_dir, file_lock
from mmcore.testing.specs import _digest

__all__ = [
    "AUDIO_TOKEN",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "build_tokenizer",
    "piece_table",
    "tokenizer_vocab_size",
]

logger = logging.getLogger(__name__)

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"
IMAGE_TOKEN = "<|image|>"
AUDIO_TOKEN = "<|audio|>"
#: Special tokens in id order (BOS = 0, EOS = 1, image = 2, audio = 3).
SPECIAL_TOKENS: tuple[str, ...] = (BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, AUDIO_TOKEN)

_TOKENIZER_REVISION = 1
_N_SENTENCES = 4000

_SUBJECTS = tuple(
    "the cat|a dog|my friend|the old man|a small bird|the teacher|our team|the river|"
    "a young girl|the city|every child|the robot|a quiet house|the green tree|this book".split("|")
)
_VERBS = tuple(
    "sees|likes|finds|makes|takes|runs to|walks past|looks at|reads|builds|opens|paints|hears|"
    "follows|remembers|carries|watches|loves|moves|writes".split("|")
)
_OBJECTS = tuple(
    "the red ball|a blue box|the long road|some bread|the morning light|a warm fire|"
    "the open window|a bright star|the dark forest|an old song|the big picture|a cold lake|"
    "the best answer|a new idea|the last train|three apples|the small garden|a paper boat".split("|")
)
_TAILS = tuple(
    "| today| again| at night| in the rain| with care| very slowly| after lunch| near the sea|"
    " before dinner| every day| for a while".split("|")
)
_ENDINGS = (".", ".", ".", "!", "?", ";", ",")
_ONSETS = tuple("b|br|c|ch|d|f|g|gr|h|k|l|m|n|p|pl|r|s|st|t|v|w".split("|"))
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
_CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st")


def _pseudo_word(rng: random.Random) -> str:
    """A pronounceable made-up word of one to four syllables."""
    n = rng.randint(1, 4)
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n))


def _sentences(vocab_size: int, seed: int = 0) -> Iterator[str]:
    """Deterministic ASCII English-like training lines covering every printable character."""
    rng = random.Random(seed)
    yield string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "")
    # Made-up words give large vocabularies enough distinct words to merge.
    for _ in range(max(0, vocab_size - 1000) // 2):
        yield " ".join(_pseudo_word(rng) for _ in range(8)) + "."
    for _ in range(_N_SENTENCES):
        words = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}"
        if rng.random() < 0.5:
            words = words[0].upper() + words[1:]
        if rng.random() < 0.15:
            words += f" {rng.randint(0, 2024)} times"
        yield words + rng.choice(_ENDINGS)


def _train(vocab_size: int) -> Tokenizer:
    """Train the BPE tokenizer in memory."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=[],  # only bytes seen in ASCII text: every token decodes to valid UTF-8
        show_progress=False,
    )
    tok.train_from_iterator(_sentences(vocab_size), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", special_tokens=[(BOS_TOKEN, tok.token_to_id(BOS_TOKEN))]
    )
    for i, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name!r} got id {tok.token_to_id(name)}, expected {i}")
    return tok


def _check_pieces(tok: Tokenizer) -> None:
    """Raise unless every id decodes, alone, to a distinct string."""
    seen: dict[str, int] = {}
    for i in range(tok.get_vocab_size()):
        piece = tok.decode([i], skip_special_tokens=False)
        if piece in seen:
            raise RuntimeError(f"ids {seen[piece]} and {i} both decode to {piece!r}")
        seen[piece] = i


def _config() -> dict[str, object]:
    """Contents of ``tokenizer_config.json``."""
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def build_tokenizer(cache_dir: Path | None = None, vocab_size: int = 512) -> Path:
    """Directory with ``tokenizer.json`` and ``tokenizer_config.json`` of a tiny ASCII BPE tokenizer.

    The tokenizer has exactly ``vocab_size`` tokens (special ones included), BOS id 0, EOS id 1, and
    a unique single-token decode for every id. Built once per cache directory; byte-identical across runs.
    """
    root = cache_dir if cache_dir is not None else default_cache_dir()
    key = _digest({"rev": _TOKENIZER_REVISION, "vocab": vocab_size, "tokenizers": tokenizers.__version__})
    target = root / f"tokenizer-{vocab_size}-{key}"
    if (target / "tokenizer.json").is_file():
        return target
    with file_lock(root / f".tokenizer-{key}.lock"):
        if (target / "tokenizer.json").is_file():
            return target
        logger.info("training a %d-token test tokenizer into %s", vocab_size, target)
        tok = _train(vocab_size)
        if tok.get_vocab_size() != vocab_size:
            raise RuntimeError(
                f"trainer produced {tok.get_vocab_size()} tokens, asked for {vocab_size}; "
                "the built-in corpus is too small for this vocab size"
            )
        _check_pieces(tok)

        def fill(tmp: Path) -> None:
            tok.save(str(tmp / "tokenizer.json"), pretty=True)
            (tmp / "tokenizer_config.json").write_text(json.dumps(_config(), indent=2, sort_keys=True) + "\n")

        return atomic_dir(target, fill)


def _tokenizer_json(path: Path) -> Path:
    """``path`` itself, or ``path/tokenizer.json`` for a directory."""
    return path / "tokenizer.json" if path.is_dir() else path


def tokenizer_vocab_size(path: Path) -> int:
    """Number of tokens (regular + special) of a tokenizer directory or ``tokenizer.json``."""
    return int(Tokenizer.from_file(str(_tokenizer_json(path))).get_vocab_size())


def piece_table(path: Path) -> dict[str, int]:
    """Map each id's single-token decode back to the id (raises if two ids share a piece)."""
    tok = Tokenizer.from_file(str(_tokenizer_json(path)))
    _check_pieces(tok)
    return {tok.decode([i], skip_special_tokens=False): i for i in range(tok.get_vocab_size())}
