"""Tool calls in a model's output: parsers for the formats model families use, and a streaming
filter that holds back text from the start of a call on.

- ``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen 2.5/3, and
  the common default);
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` or ``[TOOL_CALLS]name[ARGS]{...}``
  (Mistral / Voxtral; the marker is a special token, so the parser reads the text with special tokens).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmcore.tokenizer import Tokenizer

__all__ = ["ParsedCall", "ToolParser", "ToolStream", "TOOL_PARSERS", "tool_parser_for"]


@dataclass(frozen=True)
class ParsedCall:
    """One call: the function name and its arguments as a JSON string."""

    name: str
    arguments: str
    id: str

    @staticmethod
    def make(name: str, arguments: Any) -> ParsedCall:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        return ParsedCall(name, args, f"call_{uuid.uuid4().hex[:24]}")

    def as_openai(self, index: int | None = None) -> dict[str, Any]:
        call: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        if index is not None:
            call["index"] = index
        return call


@dataclass(frozen=True)
class ToolParser:
    """A tool-call format.

    Fields:
        name: the format's name (``--tool-parser``).
        marker: the text that opens a call.
        special: the marker is a special token (invisible in the streamed text; found by token id
            and parsed from the text decoded with special tokens).
        parse: ``text -> (content outside the calls, calls)``; text that does not parse stays content.
    """

    name: str
    marker: str
    special: bool
    parse: Callable[[str], tuple[str, list[ParsedCall]]]


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def _call_from_json(obj: Any) -> ParsedCall | None:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str):
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return ParsedCall.make(obj["name"], arguments)


def parse_hermes(text: str) -> tuple[str, list[ParsedCall]]:
    """``<tool_call>{json}</tool_call>`` blocks; a block that is not a valid call stays content."""
    calls: list[ParsedCall] = []
    content: list[str] = []
    end = 0
    for match in _HERMES.finditer(text):
        try:
            call = _call_from_json(json.loads(match.group(1)))
        except json.JSONDecodeError:
            call = None
        if call is None:
            continue
        content.append(text[end : match.start()])
        calls.append(call)
        end = match.end()
    content.append(text[end:])
    return "".join(content).strip() if calls else text, calls


_MISTRAL_MARKER = "[TOOL_CALLS]"
_MISTRAL_NAMED = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*\[ARGS\]\s*")


def parse_mistral(text: str) -> tuple[str, list[ParsedCall]]:
    """``[TOOL_CALLS][{...}, ...]`` (JSON list) or ``[TOOL_CALLS]name[ARGS]{json}`` (one per marker)."""
    head, marker, rest = text.partition(_MISTRAL_MARKER)
    if not marker:
        return text, []
    calls: list[ParsedCall] = []
    decoder = json.JSONDecoder()
    for chunk in rest.split(_MISTRAL_MARKER):
        chunk = _strip_specials(chunk)
        named = _MISTRAL_NAMED.match(chunk)
        try:
            if named:
                args, _ = decoder.raw_decode(chunk, named.end())
                calls.append(ParsedCall.make(named.group(1), args))
                continue
            value, _ = decoder.raw_decode(chunk.lstrip())
        except json.JSONDecodeError:
            return text, []
        for item in value if isinstance(value, list) else [value]:
            call = _call_from_json(item)
            if call is None:
                return text, []
            calls.append(call)
    return _strip_specials(head).strip(), calls


def _strip_specials(text: str) -> str:
    return re.sub(r"</s>|<\|im_end\|>|<eos>|<end_of_turn>", "", text)


TOOL_PARSERS: dict[str, ToolParser] = {
    "hermes": ToolParser("hermes", "<tool_call>", False, parse_hermes),
    "mistral": ToolParser("mistral", _MISTRAL_MARKER, True, parse_mistral),
}
#: The format each shipped adapter's family uses (others: hermes).
_BY_ADAPTER = {"voxtral": "mistral"}


def tool_parser_for(adapter: str, name: str | None = None) -> ToolParser:
    """The parser named `name`, else the one of the adapter's family."""
    chosen = name or _BY_ADAPTER.get(adapter, "hermes")
    if chosen not in TOOL_PARSERS:
        raise ValueError(f"unknown tool parser {chosen!r}; known: {sorted(TOOL_PARSERS)}")
    return TOOL_PARSERS[chosen]


class ToolStream:
    """Streams content up to the start of a tool call, then holds everything back for the parser.

    `push(text, token)` returns the content safe to show now; `finish(text, tokens)` returns the
    content still to show and the calls.
    """

    def __init__(self, parser: ToolParser, tokenizer: Tokenizer) -> None:
        self.parser = parser
        self.tokenizer = tokenizer
        self._marker_ids = set(tokenizer.encode(parser.marker)) if parser.special else set()
        if parser.special and len(self._marker_ids) != 1:
            self._marker_ids = set()  # the tokenizer has no such special token: the model cannot call
        self._seen = ""
        self.shown = ""
        self.in_call = False

    def push(self, text: str, token: int | None) -> str:
        if self.in_call:
            return ""
        if token is not None and token in self._marker_ids:
            self.in_call = True
            return ""
        self._seen += text
        if self.parser.special:
            out = self._seen[len(self.shown) :]
        else:
            cut = self._seen.find(self.parser.marker)
            if cut >= 0:
                self.in_call = True
                out = self._seen[len(self.shown) : cut]
            else:
                out = self._seen[len(self.shown) : len(self._seen) - _partial_suffix(self._seen, self.parser.marker)]
        self.shown += out
        return out

    def finish(self, text: str, tokens: Sequence[int]) -> tuple[str, list[ParsedCall]]:
        source = self.tokenizer.decode(tokens, skip_special_tokens=False) if self.parser.special else text
        content, calls = self.parser.parse(source)
        if not calls:
            content = text
        rest = content[len(self.shown) :] if content.startswith(self.shown) else ""
        return rest, calls


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
