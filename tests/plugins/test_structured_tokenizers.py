"""Constrained decoding over every tokenizer type mmcore-text loads: the byte vocabulary handed to
llguidance spells what `decode` gives, and masked sampling from random logits yields valid answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import mmcore_text
import numpy as np
import pytest
from test_text_plugin import corpus, hf_dir, llama2c_bins, spm_model, tiktoken_path  # noqa: F401 - fixtures

from mmcore.structured import ConstraintCompiler, ResponseFormat
from mmcore.tokenizer import Tokenizer

SCHEMA = {
    "type": "object",
    "properties": {
        "word": {"type": "string", "maxLength": 12},
        "n": {"type": "integer", "minimum": -50, "maximum": 50},
        "ok": {"type": "boolean"},
        "list": {"type": "array", "items": {"enum": ["x", "yz", "é"]}, "maxItems": 3},
    },
    "required": ["word", "n", "ok", "list"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}
TEXTS = ["hello world", "Zebras, cats; and 42 dogs!", "a\nb\n\nc", '{"k": [1, 2.5, "v"]}', "trailing space "]


@pytest.fixture(scope="module")
def metaspace_json(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:  # noqa: F811
    """A non-byte-level Hugging Face tokenizer (SentencePiece-style BPE, ``▁`` for spaces)."""
    from tokenizers import SentencePieceBPETokenizer

    tok = SentencePieceBPETokenizer()
    tok.train_from_iterator(corpus, vocab_size=300, special_tokens=["<s>", "</s>"], show_progress=False)
    path = tmp_path_factory.mktemp("metaspace") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def tekken_json(tmp_path_factory: pytest.TempPathFactory, hf_dir: Path) -> Path:  # noqa: F811
    from tokenizers import Tokenizer as HFBackend

    from mmcore.testing.hf._tekken import write_tekken

    path = tmp_path_factory.mktemp("tekken") / "tekken.json"
    write_tekken(path, HFBackend.from_file(str(hf_dir / "tokenizer.json")), {})
    return path


@pytest.fixture(
    scope="module", params=["hf-byte-level", "hf-metaspace", "sentencepiece", "tiktoken", "tekken", "llama2c"]
)
def tokenizer(request: pytest.FixtureRequest) -> tuple[Tokenizer, frozenset[int]]:
    """A loaded tokenizer of each kind and the EOS ids a program would stop on."""
    sources = {
        "hf-byte-level": "hf_dir",
        "hf-metaspace": "metaspace_json",
        "sentencepiece": "spm_model",
        "tiktoken": "tiktoken_path",
        "tekken": "tekken_json",
        "llama2c": "llama2c_bins",
    }
    source = request.getfixturevalue(sources[request.param])
    loaded = mmcore_text.load(source[0] if isinstance(source, tuple) else source)
    eos = loaded.eos_ids or frozenset({1})  # the bare Metaspace tokenizer.json names no EOS; "</s>" is 1
    return loaded, eos


def _spelled(tokenizer: Tokenizer, ids: list[int]) -> str:
    table, _ = tokenizer.byte_vocabulary()  # type: ignore[attr-defined]
    return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")


def test_byte_vocabulary_spells_what_decode_gives(tokenizer):
    tok, _ = tokenizer
    table, special = tok.byte_vocabulary()
    assert len(table) == tok.vocab_size and all(isinstance(t, bytes) for t in table)
    assert tok.eos_ids <= special or not tok.eos_ids
    for text in TEXTS:
        ids = tok.encode(text)
        spelled, decoded = _spelled(tok, ids), tok.decode(ids)
        # SentencePiece-style tokenizers add a dummy-prefix space that decode strips.
        assert spelled in (decoded, " " + decoded), (text, spelled, decoded)


def _sample(tok: Tokenizer, eos: frozenset[int], fmt: ResponseFormat, seed: int) -> tuple[list[int], bool]:
    """Ids sampled from random logits under the mask, until EOS or 300 tokens; and whether EOS came."""
    compiler = ConstraintCompiler(tok, eos, tok.vocab_size + 7)  # logits wider than the vocabulary
    mask = compiler.compile(fmt).start()
    rng = np.random.default_rng(seed)
    ids: list[int] = []
    for _ in range(300):
        logits = rng.standard_normal(tok.vocab_size + 7).astype(np.float32) * 3  # [V + 7]
        masked = mask.apply(logits)
        assert not np.isfinite(masked[tok.vocab_size :]).any()  # ids past the vocabulary never
        probs = np.exp(masked - masked.max())
        token = int(rng.choice(len(probs), p=probs / probs.sum()))
        mask.advance(token)
        if token in eos:
            return ids, True
        ids.append(token)
    return ids, False


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_sampling_gives_schema_valid_json(tokenizer, seed):
    tok, eos = tokenizer
    ids, ended = _sample(tok, eos, ResponseFormat.json_schema(SCHEMA), seed)
    assert ended
    text = _spelled(tok, ids)
    jsonschema.validate(json.loads(text), SCHEMA)
    assert json.loads(tok.decode(ids).strip()) == json.loads(text)


@pytest.mark.parametrize("seed", [0, 1])
def test_masked_sampling_fully_matches_a_regex(tokenizer, seed):
    tok, eos = tokenizer
    pattern = r"(yes|no): [a-z]{2,6} [0-9]{1,3}"
    ids, ended = _sample(tok, eos, ResponseFormat.regex(pattern), seed)
    assert ended and re.fullmatch(pattern, _spelled(tok, ids))


def test_special_tokens_other_than_eos_are_never_allowed(tokenizer):
    tok, eos = tokenizer
    _, special = tok.byte_vocabulary()
    mask = ConstraintCompiler(tok, eos, tok.vocab_size).compile(ResponseFormat.regex(r"[a-z ]*")).start()
    allowed = set(np.flatnonzero(mask.allowed()).tolist())
    assert allowed & set(special) == set(eos) & allowed


def test_a_tokenizer_without_byte_vocabulary_gets_a_typed_error(tokenizer):
    from mmcore.errors import ConstraintError

    tok, eos = tokenizer

    class Bare:
        bos_id, eos_ids, vocab_size = tok.bos_id, tok.eos_ids, tok.vocab_size

        def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
            return tok.encode(text)

        def decode(self, ids: Any, *, skip_special_tokens: bool = True) -> str:
            return tok.decode(ids)

    with pytest.raises(ConstraintError, match="byte_vocabulary"):
        ConstraintCompiler(Bare(), eos, tok.vocab_size).compile(ResponseFormat.regex("a"))
