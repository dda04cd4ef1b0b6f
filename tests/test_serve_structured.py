"""`mmcore serve` with constraints, against a live server and the openai client: `response_format`
(json_object, json_schema, regex, grammar) and forced `tool_choice` on a random-weight program, where
an unconstrained answer is never JSON; bad constraints get OpenAI's 400 envelope and the server
keeps serving."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from mmcore.testing import DecoderSpec, ProgramSpec, build_program, build_tokenizer, tokenizer_vocab_size
from mmcore.testing.live import LiveServer

WAIT = 300.0
#: A Hermes-style template (Qwen's layout, shortened to the tools' names: the context is 512).
TEMPLATE = """\
{%- if tools %}<|im_start|>system
You may call: {{ tools | map(attribute='function.name') | join(', ') }}<|im_end|>
{% endif -%}
{%- for m in messages %}<|im_start|>{{ m.role }}
{{ m.content if m.content is string else m.content | map(attribute='text') | join('') }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}
"""
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 6},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "address", "tags"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 8},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "minimum": -999, "maximum": 999},
                    "b": {"type": "integer", "minimum": -999, "maximum": 999},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    },
    {"type": "function", "function": {"name": "now"}},  # no parameters: the arguments are {}
]
PARAMETERS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "maxProperties": 0})
              for t in TOOLS}  # fmt: skip
DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-[0-3][0-9]"
ASK = [{"role": "user", "content": "Tell me about someone."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tokenizer = build_tokenizer()
    decoder = dataclasses.replace(DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), max_context_len=512)
    program = build_program(ProgramSpec(decoder=decoder, backend="xnnpack"))  # test_structured.py's program
    folder = tmp_path_factory.mktemp("serve-structured")
    template = folder / "chat_template.jinja"
    template.write_text(TEMPLATE)
    config = folder / "mmcore.toml"
    config.write_text(
        f"program = {json.dumps(str(program))}\ntokenizer = {json.dumps(str(tokenizer))}\n"
        f'[adapter]\nname = "generic"\nchat_template = {json.dumps(str(template))}\n'
    )
    live = LiveServer(["--config", str(config)])
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=WAIT)


def _chat(client: openai.OpenAI, **body: Any) -> Any:
    body.setdefault("messages", ASK)
    body.setdefault("max_tokens", 300)
    return client.chat.completions.create(model=client.models.list().data[0].id, **body)


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}


def test_unconstrained_answers_are_not_json(client: openai.OpenAI) -> None:
    answer = _chat(client, temperature=0.0, max_tokens=60).choices[0].message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer)


@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 0.0}, {"temperature": 1.0, "seed": 1}, {"temperature": 0.8, "top_p": 0.9, "seed": 2}],
    ids=["greedy", "t1", "top_p"],
)
def test_json_schema_answers_validate(client: openai.OpenAI, sampling: dict[str, Any]) -> None:
    choice = _chat(client, response_format=_schema(PERSON), **sampling).choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), PERSON)


@pytest.mark.parametrize(("temperature", "seed"), [(0.0, 0), (0.7, 1), (1.0, 4)])
def test_json_object_gives_an_object(client: openai.OpenAI, temperature: float, seed: int) -> None:
    body = {"response_format": {"type": "json_object"}, "temperature": temperature, "seed": seed, "max_tokens": 400}
    choice = _chat(client, **body).choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(json.loads(choice.message.content), dict)


def test_regex_and_grammar_forms(client: openai.OpenAI) -> None:
    for seed in (0, 1):
        answer = _chat(client, response_format={"type": "regex", "regex": DATE}, temperature=1.0, seed=seed)
        assert re.fullmatch(DATE, answer.choices[0].message.content)
    grammar = 'start: "(" NUM ("," NUM)* ")"\nNUM: /[1-9][0-9]?/\n'
    answer = _chat(client, response_format={"type": "grammar", "grammar": grammar}, temperature=1.0, seed=4)
    assert re.fullmatch(r"\([1-9][0-9]?(,[1-9][0-9]?)*\)", answer.choices[0].message.content)


def test_streamed_answer_validates(client: openai.OpenAI) -> None:
    stream = _chat(client, response_format=_schema(PERSON), temperature=0.9, seed=5, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)


def test_budget_hit_before_the_answer_is_complete_is_length(client: openai.OpenAI) -> None:
    choice = _chat(client, response_format=_schema(PERSON), max_tokens=5).choices[0]
    assert choice.finish_reason == "length"


def _check_calls(choice: Any, names: set[str]) -> None:
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls
    for call in calls:
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_tool_choice_gives_a_valid_call(client: openai.OpenAI, seed: int) -> None:
    # One call (parallel calls are checked at the grammar level below: a random model may go on calling).
    body = {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False}
    choice = _chat(client, **body, temperature=1.0, seed=seed).choices[0]
    _check_calls(choice, set(PARAMETERS))


@pytest.mark.parametrize("name", ["get_weather", "add", "now"])
def test_a_named_function_is_called(client: openai.OpenAI, name: str) -> None:
    choice = _chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": name}},
                   temperature=0.9, seed=7, parallel_tool_calls=False).choices[0]  # fmt: skip
    _check_calls(choice, {name})
    assert len(choice.message.tool_calls) == 1


def test_a_streamed_forced_call_arrives_as_a_tool_call_delta(client: openai.OpenAI) -> None:
    body = {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False, "temperature": 1.0, "seed": 0}
    whole = _chat(client, **body).choices[0]
    _check_calls(whole, set(PARAMETERS))
    chunks = [c for c in _chat(client, stream=True, **body) if c.choices]
    deltas = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    got = [(d.function.name, json.loads(d.function.arguments)) for d in deltas]
    assert got == [(c.function.name, json.loads(c.function.arguments)) for c in whole.message.tool_calls]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks).strip()


BAD = [
    ({"response_format": _schema({"type": "strng"})}, "response_format", "Invalid type"),
    ({"response_format": _schema({"not": {"type": "string"}})}, "response_format", "Unimplemented keys"),
    (
        {"response_format": _schema({"type": "string", "minLength": 5, "maxLength": 2})},
        "response_format",
        "Unsatisfiable",
    ),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format", "holding 'schema'"),
    ({"response_format": {"type": "regex", "regex": "a(b"}}, "response_format", "unclosed group"),
    ({"response_format": {"type": "xml"}}, "response_format", "must be one of"),
    ({"response_format": {"type": "regex", "regex": "é+"}}, "response_format", "allows no token"),  # ASCII vocabulary
    ({"response_format": {"type": "regex", "regex": "[^\\s\\S]"}}, "response_format", "matches no text at all"),
    (
        {"response_format": {"type": "grammar", "grammar": 'start: "a" start'}},
        "response_format",
        "rule 'start' never derives a finite string",
    ),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "fly"}}}, "tool_choice", "'fly'"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    (
        {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
            "tool_choice": "required",
        },
        "tools",
        "cannot constrain a call",
    ),
    (
        {"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
        "tool_choice",
        "cannot be combined",
    ),
]


@pytest.mark.parametrize(("body", "param", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_constraints_get_a_400_envelope_and_the_server_keeps_serving(
    client: openai.OpenAI, body: dict[str, Any], param: str, message: str
) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            answer = _chat(client, stream=stream, **body)
            if stream:
                list(answer)
        error = info.value.body
        assert isinstance(error, dict) and error["param"] == param, error
        assert message in error["message"] and "\n" not in error["message"]
        assert info.value.response.json()["error"]["type"] == "invalid_request_error"
    answer = _chat(client, response_format={"type": "regex", "regex": DATE}, temperature=0.0)
    assert re.fullmatch(DATE, answer.choices[0].message.content)


# -- the call grammars without a server: random logits under the mask always give parseable calls --
@pytest.fixture(scope="module")
def tekken_with_tool_calls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Tekken tokenizer whose control token 9 is ``[TOOL_CALLS]``, as Mistral's."""
    import mmcore_text
    from tokenizers import Tokenizer as HFBackend

    from mmcore.testing.hf._tekken import write_tekken

    path = tmp_path_factory.mktemp("tekken") / "tekken.json"
    write_tekken(path, HFBackend.from_file(str(build_tokenizer() / "tokenizer.json")), {})
    data = json.loads(path.read_text())
    data["special_tokens"][9]["token_str"] = "[TOOL_CALLS]"
    path.write_text(json.dumps(data))
    return mmcore_text.load(path)


def _sampled_calls(tokenizer: Any, parser: str, functions: list[Any], parallel: bool, seed: int) -> list[Any]:
    import numpy as np

    from mmcore.serve.constrained import tool_call_format
    from mmcore.serve.tools import TOOL_PARSERS, ToolStream
    from mmcore.structured import ConstraintCompiler

    eos = tokenizer.eos_ids
    fmt = tool_call_format(functions, TOOL_PARSERS[parser], tokenizer, parallel=parallel)
    mask = ConstraintCompiler(tokenizer, eos, tokenizer.vocab_size).compile(fmt).start()
    rng = np.random.default_rng(seed)
    ids: list[int] = []
    boost = np.zeros(tokenizer.vocab_size, dtype=np.float32)
    boost[sorted(eos)] = 6.0  # end once the calls are complete, rather than adding more
    while len(ids) < 2000:
        logits = mask.apply(rng.standard_normal(tokenizer.vocab_size).astype(np.float32) * 3 + boost)
        probs = np.exp(logits - logits.max())
        token = int(rng.choice(len(probs), p=probs / probs.sum()))
        mask.advance(token)
        if token in eos:
            break
        ids.append(token)
    assert mask.ended
    content, calls = ToolStream(TOOL_PARSERS[parser], tokenizer).finish(tokenizer.decode(ids), ids)
    assert not content.strip()
    return calls


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "single"])
@pytest.mark.parametrize("parser", ["hermes", "mistral"])
def test_sampled_calls_parse_and_validate_in_each_format(
    tekken_with_tool_calls: Any, parser: str, parallel: bool
) -> None:
    functions = [t["function"] for t in TOOLS]
    for seed in range(6):
        calls = _sampled_calls(tekken_with_tool_calls, parser, functions, parallel, seed)
        assert calls and (parallel or len(calls) == 1)
        for call in calls:
            jsonschema.validate(json.loads(call.arguments), PARAMETERS[call.name])


def test_a_mistral_call_needs_the_marker_token() -> None:
    import mmcore_text

    from mmcore.serve.constrained import tool_call_format
    from mmcore.serve.errors import APIError
    from mmcore.serve.tools import TOOL_PARSERS

    plain = mmcore_text.load(build_tokenizer())  # no [TOOL_CALLS] token
    with pytest.raises(APIError, match=r"no \[TOOL_CALLS\] token") as info:
        tool_call_format([TOOLS[0]["function"]], TOOL_PARSERS["mistral"], plain)
    assert info.value.status == 400 and info.value.param == "tool_choice"
