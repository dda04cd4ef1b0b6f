"""Constrained answers for `mmcore serve`: a chat request's `response_format`, and `tool_choice`
("required" or a named function) as a grammar whose every answer is a valid call of the given tools
in the model family's tool-call format (see `tools.py`).

A forced call's grammar embeds one JSON Schema per tool (`{"name": const, "arguments": the tool's
parameters}`), so llguidance checks the parameter schemas when the request is validated and the
arguments of every call validate against them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mmcore.errors import ConstraintError
from mmcore.serve.errors import APIError
from mmcore.serve.tools import ToolParser
from mmcore.structured import ResponseFormat, check_response_format
from mmcore.tokenizer import Tokenizer

__all__ = ["forced_tools", "request_format", "tool_call_format"]

#: Arguments of a function that declares no `parameters`: an empty object.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def request_format(value: Mapping[str, Any] | None) -> ResponseFormat | None:
    """The checked `response_format` of a request (None for none or `{"type": "text"}`); a bad
    schema, an unsupported keyword or an unsatisfiable constraint is a 400 naming `response_format`."""
    try:
        return check_response_format(value)
    except ConstraintError as exc:
        raise APIError(400, str(exc), param="response_format", code="invalid_response_format") from None


def forced_tools(tools: Sequence[Mapping[str, Any]], tool_choice: Any) -> list[Mapping[str, Any]] | None:
    """The functions (`tools[i]["function"]`) a call must use: all of them for `"required"`, the
    named one for `{"type": "function", "function": {"name": ...}}`; None when calls are not forced."""
    if tool_choice in (None, "auto", "none"):
        return None
    functions = [tool["function"] for tool in tools]
    if tool_choice == "required":
        return functions
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        chosen = tool_choice.get("function")
        name = chosen.get("name") if isinstance(chosen, Mapping) else None
        if not isinstance(name, str):
            raise APIError(400, "tool_choice {'type': 'function'} needs 'function': {'name': ...}",
                           param="tool_choice")  # fmt: skip
        named = [f for f in functions if f.get("name") == name]
        if not named:
            known = [f.get("name") for f in functions]
            raise APIError(400, f"tool_choice names function {name!r}, which is not among the tools {known}",
                           param="tool_choice")  # fmt: skip
        return named[:1]
    raise APIError(400, f"tool_choice must be 'none', 'auto', 'required' or {{'type': 'function', 'function': "
                   f"{{'name': ...}}}}, got {tool_choice!r}", param="tool_choice")  # fmt: skip


def _call_schema(function: Mapping[str, Any], number: int) -> dict[str, Any]:
    parameters = function.get("parameters")
    if parameters is None or parameters == {}:
        parameters = _NO_PARAMETERS
    if not isinstance(parameters, Mapping):
        raise APIError(400, f"tools[{number}].function.parameters must be a JSON Schema object",
                       param=f"tools.{number}.function.parameters")  # fmt: skip
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": dict(parameters)},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_call_format(
    functions: Sequence[Mapping[str, Any]], parser: ToolParser, tokenizer: Tokenizer, *, parallel: bool = True
) -> ResponseFormat:
    """A Lark grammar (llguidance's dialect) whose answers are one call (more with `parallel`) of
    `functions` in `parser`'s format; a parameter schema the library cannot use is a 400."""
    calls = [_call_schema(f, i) for i, f in enumerate(functions)]
    one: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    compact = {"x-guidance": {"whitespace_flexible": False}}  # the arguments are re-serialized anyway
    if parser.name == "hermes":
        body = json.dumps({**one, **compact})
        repeat = ' ("\\n" call)*' if parallel else ""
        grammar = f'start: call{repeat}\ncall: "<tool_call>\\n" %json {body} "\\n</tool_call>"\n'
    elif parser.name == "mistral":
        marker = tokenizer.encode(parser.marker)
        if len(marker) != 1:
            raise APIError(400, f"tool_choice forces a call, but this model's tokenizer has no {parser.marker} "
                           "token to open one", param="tool_choice", code="unsupported_parameter")  # fmt: skip
        array: dict[str, Any] = {"type": "array", "items": one, "minItems": 1, **compact}
        if not parallel:
            array["maxItems"] = 1
        grammar = f"start: <[{marker[0]}]> %json {json.dumps(array)}\n"
    else:
        raise APIError(400, f"tool_choice cannot force calls in the {parser.name!r} tool-call format",
                       param="tool_choice", code="unsupported_parameter")  # fmt: skip
    names = ", ".join(str(f["name"]) for f in functions)
    try:
        fmt = check_response_format({"type": "grammar", "grammar": grammar})
    except ConstraintError as exc:
        raise APIError(400, f"the parameters of tool(s) {names} cannot constrain a call: {exc}", param="tools",
                       code="invalid_response_format") from None  # fmt: skip
    assert fmt is not None
    return fmt
