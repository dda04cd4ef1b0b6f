"""Constrained decoding (mmcore.structured) on random-weight programs: every constrained answer
parses and validates, greedy ids match a plain Python loop applying llguidance's mask, errors are
typed and come before any decoding."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import llguidance
import llguidance.numpy as llnp
import numpy as np
import pytest

from mmcore import GenerationConfig, TokensInput
from mmcore.decoder import MultimodalDecoderRunner
from mmcore.errors import ConfigError, ConstraintError
from mmcore.program import Program
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore.session import Session
from mmcore.structured import ConstraintCompiler, ResponseFormat

PROMPT = [TokensInput([0, 10, 11, 12, 13])]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "birthday": {"type": "string", "format": "date"},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 8},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
        "score": {"type": "number", "minimum": -1, "maximum": 1},
        "active": {"const": True},
    },
    "required": ["name", "age", "address", "tags", "active"],
    "additionalProperties": False,
}
COMPACT_PERSON = {**PERSON, "x-guidance": {"whitespace_flexible": False}}  # short answers for small budgets
DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-[0-3][0-9]"
ARITHMETIC = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor ("*" factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[1-9][0-9]{0,2}/
"""
ARITHMETIC_GBNF = r"""
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor ("*" factor)*
factor ::= [1-9] [0-9]? [0-9]? | "(" expr ")"
"""


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}


def _config(fmt: Any, **changes: Any) -> GenerationConfig:
    base = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=400, response_format=fmt)
    return base.replace(**changes)


@pytest.fixture(scope="module")
def pte(make_spec, program_path) -> Path:
    return program_path(make_spec(backend="xnnpack", decoder_max_context_len=512))


@pytest.fixture
def runner(pte, tokenizer_dir, plugin_manager) -> MultimodalRunner:
    return MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)


def _is_arithmetic(text: str) -> bool:
    """Whether `text` is a +, -, * expression over integers and parentheses (Python's own parser)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult)
    return all(isinstance(node, allowed) for node in ast.walk(tree)) and not re.search(r"\b0\d", text)


def test_unconstrained_answers_are_not_json(runner):
    text = runner.generate(PROMPT, GenerationConfig(echo=False, temperature=0.0, max_new_tokens=100)).text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


SAMPLING = [
    {"temperature": 0.0},
    {"temperature": 1.0, "seed": 3},
    {"temperature": 0.9, "top_k": 20, "seed": 4},
    {"temperature": 1.2, "top_p": 0.8, "seed": 5},
    {"temperature": 0.0, "repetition_penalty": 1.3, "frequency_penalty": 0.5, "presence_penalty": 0.2},
    {"temperature": 0.0, "logprobs": True},
]


@pytest.mark.parametrize("sampling", SAMPLING, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_json_schema_answers_validate_in_every_decoding_mode(runner, sampling):
    result = runner.generate(PROMPT, _config(_json_schema(PERSON), **sampling))
    assert result.stop_reason == "eos" and not result.incomplete
    jsonschema.validate(json.loads(result.text), PERSON)
    if sampling.get("logprobs"):
        assert result.logprobs is not None and all(lp <= 0 for lp in result.logprobs)


def test_json_object_gives_an_object(runner):
    result = runner.generate(PROMPT, _config({"type": "json_object"}, temperature=0.8, seed=1, max_new_tokens=500))
    assert result.stop_reason == "eos"
    assert isinstance(json.loads(result.text), dict)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regex_answers_fully_match(runner, seed):
    result = runner.generate(PROMPT, _config({"type": "regex", "regex": DATE}, temperature=1.0, seed=seed))
    assert re.fullmatch(DATE, result.text) and result.stop_reason == "eos"


@pytest.mark.parametrize(("grammar", "syntax"), [(ARITHMETIC, "lark"), (ARITHMETIC_GBNF, "gbnf")], ids=["lark", "gbnf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_grammar_answers_parse(runner, grammar, syntax, seed):
    fmt = {"type": "grammar", "grammar": grammar, "syntax": syntax}
    result = runner.generate(PROMPT, _config(fmt, temperature=1.0, seed=seed))
    assert result.stop_reason == "eos" and _is_arithmetic(result.text), result.text


def _reference_greedy(pte: Path, compiler: ConstraintCompiler, fmt: ResponseFormat, budget: int) -> list[int]:
    """Greedy ids from the program's logits, stepped from Python, with llguidance's numpy mask applied."""
    from mmcore.structured._llguidance import check_format

    tokenizer = compiler.lltokenizer()
    matcher = llguidance.LLMatcher(tokenizer, check_format(fmt, tokenizer))
    decoder = MultimodalDecoderRunner(Program(pte))
    bitmask = llnp.allocate_token_bitmask(1, tokenizer.vocab_size)  # [1, ceil(V / 32)]
    logits = decoder.prefill_ids(PROMPT[0].ids, 0, decoder.max_tokens_per_call).copy()
    pos, ids = len(PROMPT[0].ids), []
    while len(ids) < budget:
        llnp.fill_next_token_bitmask(matcher, bitmask)
        row = logits[None, : tokenizer.vocab_size].astype(np.float32)  # [1, V]
        llnp.apply_token_bitmask_inplace(row, bitmask)
        token = int(row[0].argmax())
        ids.append(token)
        assert matcher.consume_token(token)
        if token in compiler.eos_ids:
            break
        logits = decoder.step_token(token, pos).copy()
        pos += 1
    return ids


@pytest.mark.parametrize(
    "fmt",
    [_json_schema(PERSON), {"type": "regex", "regex": DATE}, {"type": "grammar", "grammar": ARITHMETIC}],
    ids=["json_schema", "regex", "grammar"],
)
def test_greedy_ids_equal_a_plain_python_loop_over_the_programs_logits(runner, pte, fmt):
    config = _config(fmt)
    native = runner.generate(PROMPT, config)  # masked argmax in the native greedy loop
    assert runner._generator is not None and runner._generator._greedy_loop is not None
    runner.reset()
    python = runner.generate(PROMPT, config.replace(logprobs=True))  # the Python sampler path
    assert runner._constraints is not None
    expected = _reference_greedy(pte, runner._constraints, config.response_format, 400)  # type: ignore[arg-type]
    assert native.tokens == expected
    assert python.tokens == expected


def test_budget_hit_before_completion_is_length_and_incomplete(runner):
    result = runner.generate(PROMPT, _config(_json_schema(PERSON), max_new_tokens=6))
    assert result.stop_reason == "length" and result.incomplete
    assert len(result.tokens) == 6
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.text)


def test_eos_is_allowed_exactly_when_the_answer_is_complete(runner):
    runner.load()
    compiler = ConstraintCompiler(runner.tokenizer, runner.metadata.eos_ids, runner.decoder.vocab_width)
    mask = compiler.compile(ResponseFormat.regex("ab(cd)?")).start()
    eos = min(runner.metadata.eos_ids)
    steps = []
    for char in "abcd":
        steps.append((bool(mask.allowed()[eos]), mask.complete))
        mask.advance(runner.tokenizer.encode(char)[0])
    steps.append((bool(mask.allowed()[eos]), mask.complete))
    assert steps == [(False, False), (False, False), (True, True), (False, False), (True, True)]
    assert mask.allowed().sum() == len(runner.metadata.eos_ids)  # nothing can follow "abcd" but EOS
    mask.advance(eos)
    assert mask.ended and mask.complete


def test_a_forbidden_draft_token_is_rejected_without_a_decoder_call(runner):
    runner.load()
    compiler = ConstraintCompiler(runner.tokenizer, runner.metadata.eos_ids, runner.decoder.vocab_width)
    mask = compiler.compile(ResponseFormat.regex("[0-9]+x")).start()
    enc = runner.tokenizer.encode
    draft = [enc("1")[0], enc("2")[0], enc("a")[0], enc("3")[0]]
    assert mask.accepted_prefix(draft) == 2
    mask.advance(draft[0])
    mask.advance(draft[1])
    mask.rollback(2)
    assert mask.accepted_prefix(draft) == 2  # the state went back to the start


BAD_FORMATS = [
    ({"type": "json_schema", "json_schema": {"schema": {"type": "strng"}}}, "Invalid type"),
    ({"type": "json_schema", "json_schema": {"schema": {"not": {"type": "string"}}}}, "Unimplemented keys"),
    (
        {"type": "json_schema", "json_schema": {"schema": {"type": "string", "minLength": 5, "maxLength": 2}}},
        "Unsatisfiable",
    ),
    ({"type": "json_schema", "json_schema": {"schema": {"enum": []}}}, "Unsatisfiable"),
    (
        _json_schema({"type": "object", "properties": {}, "required": ["x"], "additionalProperties": False}),
        "required property 'x' is unsatisfiable",
    ),
    (_json_schema({"allOf": [{"type": "string"}, {"type": "integer"}]}), "incompatible types"),
    (_json_schema({"type": "string", "pattern": "(?=a)b"}), "look-around"),
    (_json_schema({"$ref": "#/$defs/nope"}), "'/$defs/nope' does not exist"),
    (_json_schema({"type": "string", "format": "weird"}), "Unknown format: weird"),
    ({"type": "regex", "regex": "(?=a)b"}, "look-around"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "needs a 'json_schema' dict holding 'schema'"),
    ({"type": "json_schema", "json_schema": {"schema": "{not json"}}, "not valid JSON"),
    ({"type": "regex", "regex": "a(b"}, "unclosed group"),
    ({"type": "grammar", "grammar": "start: foo"}, "foo"),
    ({"type": "grammar", "grammar": "root ::= (", "syntax": "gbnf"}, "gbnf"),
    ({"type": "xml"}, "must be one of"),
    ({"type": "regex", "regex": "a", "extra": 1}, "takes no key"),
    ("json", "must be a dict"),
]


@pytest.mark.parametrize(("fmt", "message"), BAD_FORMATS, ids=[str(i) for i in range(len(BAD_FORMATS))])
def test_bad_formats_raise_a_typed_one_line_error_at_config_time(fmt, message):
    with pytest.raises(ConstraintError, match=re.escape(message)) as info:
        GenerationConfig(response_format=fmt)
    assert "\n" not in str(info.value)


def test_ignore_eos_with_a_constraint_is_refused():
    with pytest.raises(ConfigError, match="ignore_eos"):
        GenerationConfig(response_format={"type": "json_object"}, ignore_eos=True)


def test_a_format_this_vocabulary_cannot_start_fails_before_decoding(runner):
    before = runner.generate(PROMPT, _config({"type": "regex", "regex": DATE}))
    pos = runner.pos
    with pytest.raises(ConstraintError, match="allows no token") as info:
        runner.generate([TokensInput([5])], _config({"type": "regex", "regex": "é+"}))  # the tokenizer is ASCII
    assert "\n" not in str(info.value)
    assert runner.pos == pos  # nothing was prefilled or decoded
    runner.reset()
    assert runner.generate(PROMPT, _config({"type": "regex", "regex": DATE})).tokens == before.tokens


def test_streaming_and_async_streaming_carry_the_constrained_answer(runner):
    config = _config(_json_schema(COMPACT_PERSON), temperature=0.7, seed=12)
    expected = runner.generate(PROMPT, config)
    runner.reset()
    pieces = list(runner.stream(PROMPT, config))
    assert [p.token for p in pieces if p.token is not None] == expected.tokens
    jsonschema.validate(json.loads("".join(p.text for p in pieces)), PERSON)


def test_session_turns_are_constrained_per_turn(runner):
    session = Session(runner)
    first = session.send("hello there", _config(_json_schema(COMPACT_PERSON)))
    jsonschema.validate(json.loads(first.text), PERSON)
    second = session.send("and a date?", _config({"type": "regex", "regex": DATE}, temperature=1.0, seed=2))
    assert re.fullmatch(DATE, second.text)
    third = session.send("now anything", GenerationConfig(echo=False, temperature=0.0, max_new_tokens=20))
    assert third.stop_reason in ("eos", "length")


def test_text_only_programs_are_constrained_too(make_spec, program_path, tokenizer_dir, plugin_manager):
    runner = TextLLMRunner(program_path(make_spec(kind="text")), tokenizer_dir, plugin_manager=plugin_manager)
    for seed in (0, 1):
        result = runner.generate([TokensInput([0, 10, 11])], _config({"type": "regex", "regex": DATE}, seed=seed))
        assert re.fullmatch(DATE, result.text)
        runner.reset()


def test_compiled_formats_are_cached_per_runner(runner):
    config = _config({"type": "regex", "regex": DATE})
    runner.generate(PROMPT, config)
    assert runner._constraints is not None
    assert runner._constraints.last_compile_s > 0
    runner.reset()
    runner.generate(PROMPT, config)
    assert runner._constraints.last_compile_s == 0.0


def test_properties_come_in_the_schemas_order(runner):
    # OpenAI emits keys in the schema's order (apps rely on it, e.g. reasoning before the answer).
    schema = {
        "type": "object",
        "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "boolean"}, "mid": {"enum": ["x", "y"]}},
        "required": ["zeta", "alpha", "mid"],
        "additionalProperties": False,
        "x-guidance": {"whitespace_flexible": False},
    }
    result = runner.generate(PROMPT, _config(_json_schema(schema), temperature=1.0, seed=0))
    assert list(json.loads(result.text)) == ["zeta", "alpha", "mid"]


# -- unsatisfiable constraints: refused before any decoding, satisfiable look-alikes still accepted --
UNSATISFIABLE = [
    ({"type": "grammar", "grammar": 'start: "a" start'}, "rule 'start' never derives a finite string"),
    ({"type": "grammar", "grammar": 'start: x\nx: "(" y ")"\ny: x "," x\n  | x'}, "'start', 'x', 'y'"),
    ({"type": "grammar", "grammar": 'start: item+\nitem: "a" item'}, "'start', 'item'"),
    ({"type": "grammar", "grammar": 'start: "a" X\nX: /[^\\s\\S]/'}, "'start', 'X'"),
    ({"type": "grammar", "grammar": 'root ::= "a" root\n', "syntax": "gbnf"}, "rule 'root' never derives"),
    ({"type": "regex", "regex": r"[^\s\S]"}, "matches no text at all"),
    ({"type": "regex", "regex": r"ab[^\s\S]c"}, "matches no text at all"),
    (_json_schema({"type": "string", "minLength": 3, "maxLength": 1}), "Unsatisfiable"),
    (_json_schema({"enum": []}), "Unsatisfiable"),
    (_json_schema({"allOf": [{"type": "string"}, {"type": "integer"}]}), "incompatible types"),
    (_json_schema({"type": "string", "pattern": "^[^\\s\\S]$"}), "Regex is empty"),
]
SATISFIABLE = [
    {"type": "grammar", "grammar": 'start: "a" start | "b"'},
    {"type": "grammar", "grammar": 'start: item*\nitem: "a" item'},  # item never finishes, but start: "" does
    {"type": "grammar", "grammar": 'start: [item] "z"\nitem: "a" item'},
    {"type": "grammar", "grammar": 'start: x\nx: "(" y ")"\ny: x "," x\n  | "0"'},
    {"type": "grammar", "grammar": 'start: %json {"type": "integer"} | <|eos|>'},
    {"type": "grammar", "grammar": ARITHMETIC},
    {"type": "grammar", "grammar": ARITHMETIC_GBNF, "syntax": "gbnf"},
    {"type": "grammar", "grammar": 'start: "x"{0,3} "y" ~ 1..2 // comment\n'},
    {"type": "regex", "regex": DATE},
    {"type": "regex", "regex": "(?:)"},
]


@pytest.mark.parametrize(("fmt", "message"), UNSATISFIABLE, ids=[str(i) for i in range(len(UNSATISFIABLE))])
def test_unsatisfiable_constraints_are_refused_at_config_time(fmt, message):
    with pytest.raises(ConstraintError, match=re.escape(message)) as info:
        GenerationConfig(response_format=fmt)
    assert "\n" not in str(info.value) and str(info.value).startswith("response_format ")


@pytest.mark.parametrize("fmt", SATISFIABLE, ids=[str(i) for i in range(len(SATISFIABLE))])
def test_satisfiable_look_alikes_are_accepted(fmt):
    assert GenerationConfig(response_format=fmt).response_format is not None


def test_an_unsatisfiable_grammar_fails_before_any_decoding(runner):
    pos = runner.pos
    with pytest.raises(ConstraintError, match="never derives a finite string"):
        runner.generate(PROMPT, _config(ResponseFormat.grammar('start: "a" start')))
    assert runner.pos == pos  # nothing was prefilled or decoded
    fine = runner.generate(PROMPT, _config(ResponseFormat.grammar('start: "a" start | "b"'), max_new_tokens=64))
    assert re.fullmatch("a*b", fine.text)
