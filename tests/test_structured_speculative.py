"""Constrained decoding with speculation: drafts the mask forbids are cut before the decoder call,
verification rows are masked, and the ids equal constrained decoding without speculation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mmcore import GenerationConfig, TokensInput
from mmcore.runner import TextLLMRunner
from mmcore.speculative import SpeculativeConfig
from mmcore.speculative.loop import Verifier

# A prompt with repeats, so prompt lookup finds drafts.
PROMPT = [TokensInput([0, *range(20, 36), *range(20, 30), 70, 71, *range(20, 28)])]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "items": {"type": "array", "items": {"type": "object", "properties": {"k": {"enum": ["a", "bb", "ccc"]}},
                                             "required": ["k"], "additionalProperties": False}, "maxItems": 3},
    },
    "required": ["name", "n", "items"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}  # fmt: skip
FORMATS = {
    "json_schema": {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}},
    "json_object": {"type": "json_object"},
    "regex": {"type": "regex", "regex": r"([a-z]{1,6} ){8,12}[0-9]{1,4}"},
    "grammar": {
        "type": "grammar",
        "grammar": 'start: item "," item "," item ("," item)*\nitem: /[a-z ]{2,8}/ | "(" start ")"\n',
    },
}
NGRAM = SpeculativeConfig(method="ngram", num_draft_tokens=6, adaptive=False)


@pytest.fixture(scope="module")
def text_all(make_spec: Any, program_path: Any) -> Path:
    return program_path(make_spec(kind="text", logits="all"))  # type: ignore[no-any-return]


@pytest.fixture
def runner(text_all: Path, tokenizer_dir: Path, plugin_manager: Any) -> TextLLMRunner:
    return TextLLMRunner(text_all, tokenizer_dir, plugin_manager=plugin_manager)


def _run(runner: TextLLMRunner, config: GenerationConfig) -> Any:
    runner.reset()
    return runner.generate(PROMPT, config)


def _valid(name: str, text: str) -> bool:
    if name == "json_schema":
        jsonschema.validate(json.loads(text), SCHEMA)
        return True
    if name == "json_object":
        return isinstance(json.loads(text), dict)
    if name == "regex":
        return re.fullmatch(FORMATS["regex"]["regex"], text) is not None
    return re.fullmatch(r"[a-z ,()]+", text) is not None and text.count("(") == text.count(")")


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize(
    "speculative",
    [NGRAM, SpeculativeConfig(method="ngram", num_draft_tokens=4, adaptive=True)],
    ids=["ngram", "ngram-adaptive"],
)
def test_constrained_speculative_ids_equal_constrained_plain_ids(
    runner: TextLLMRunner, name: str, speculative: SpeculativeConfig
) -> None:
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=200, response_format=FORMATS[name])
    plain = _run(runner, config)
    spec = _run(runner, config.replace(speculative=speculative))
    assert spec.tokens == plain.tokens
    assert spec.stop_reason == plain.stop_reason and spec.incomplete == plain.incomplete
    if plain.stop_reason == "eos":
        assert _valid(name, spec.text)
    info = spec.stats.extra["speculative"]
    assert "off" not in info and info["native_verification"] is False  # masked rows are verified in Python
    if not speculative.adaptive:
        assert info["draft_tokens_proposed"] > 0


def test_forbidden_drafts_are_cut_before_the_decoder_call(
    runner: TextLLMRunner, text_all: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The target as its own draft model proposes its unconstrained argmax, which a digits-only
    # regex mostly forbids: those drafts never reach the decoder, the accepted ones are the rest.
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=40,
                              response_format={"type": "regex", "regex": "[0-9]{40}"})  # fmt: skip
    plain = _run(runner, config)
    verified: list[list[int]] = []
    rows = Verifier.rows

    def spy(self: Verifier, ids: list[int], pos: int) -> Any:
        verified.append(list(ids))
        return rows(self, ids, pos)

    monkeypatch.setattr(Verifier, "rows", spy)
    draft = SpeculativeConfig(method="draft", draft_model=text_all, num_draft_tokens=4, adaptive=False)
    spec = _run(runner, config.replace(speculative=draft))
    info = spec.stats.extra["speculative"]
    assert spec.tokens == plain.tokens and re.fullmatch("[0-9]{40}", spec.text)
    assert info["draft_tokens_forbidden"] > 0
    # What reached the decoder: each call's current token and only the drafts the mask allowed.
    assert len(verified) == info["verification_calls"]
    assert sum(len(ids) - 1 for ids in verified) == info["draft_tokens_proposed"] - info["draft_tokens_forbidden"]
    digits = {t for t in range(runner.tokenizer.vocab_size) if runner.tokenizer.decode([t]).isdigit()}
    assert all(set(ids[1:]) <= digits for ids in verified)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["ngram", "draft"])
def test_sampled_constrained_speculative_answers_validate(
    runner: TextLLMRunner, text_all: Path, method: str, seed: int
) -> None:
    speculative = NGRAM if method == "ngram" else SpeculativeConfig(method="draft", draft_model=text_all,
                                                                     num_draft_tokens=4, adaptive=False)  # fmt: skip
    config = GenerationConfig(echo=False, temperature=1.0, seed=seed, max_new_tokens=200,
                              response_format=FORMATS["json_schema"], speculative=speculative)  # fmt: skip
    result = _run(runner, config)
    assert result.stop_reason == "eos" and _valid("json_schema", result.text)
    assert result.stats.extra["speculative"]["verification_calls"] > 0
