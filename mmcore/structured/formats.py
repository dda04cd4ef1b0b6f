"""Response formats: the OpenAI `response_format` shapes plus regex and grammar forms, checked for shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mmcore.errors import ConstraintError

__all__ = ["ResponseFormat", "FormatKind", "GrammarSyntax", "parse_response_format"]

FormatKind = Literal["json_object", "json_schema", "regex", "grammar"]
GrammarSyntax = Literal["lark", "gbnf"]
_KINDS = ("text", "json_object", "json_schema", "regex", "grammar")


@dataclass(frozen=True)
class ResponseFormat:
    """A constraint on a generated answer (hashable, so compiled forms can be cached by it).

    Fields:
        kind: "json_object" (any JSON object), "json_schema", "regex" or "grammar".
        source: the schema as compact JSON text, the regular expression, or the grammar text.
        name: the schema's name (OpenAI's `json_schema.name`), for messages.
        syntax: the grammar's syntax, "lark" (llguidance's Lark dialect) or "gbnf" (llama.cpp's).
    """

    kind: FormatKind
    source: str = ""
    name: str | None = None
    syntax: GrammarSyntax = "lark"

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | bool, *, name: str | None = None) -> ResponseFormat:
        """A JSON Schema constraint (a dict, or True for any JSON value)."""
        if isinstance(schema, bool):
            return cls("json_schema", json.dumps(schema), name)
        if not isinstance(schema, Mapping):
            raise ConstraintError(
                f"response_format json_schema.schema must be a JSON Schema object, got {type(schema).__name__}"
            )
        try:
            text = json.dumps(schema, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConstraintError(f"response_format json_schema.schema is not JSON-serializable: {exc}") from None
        return cls("json_schema", text, name)

    @classmethod
    def regex(cls, pattern: str) -> ResponseFormat:
        """A regular expression the whole answer must match (Rust `regex` syntax, no look-around)."""
        if not isinstance(pattern, str) or not pattern:
            raise ConstraintError(f"response_format regex must be a non-empty string, got {pattern!r}")
        return cls("regex", pattern)

    @classmethod
    def grammar(cls, text: str, *, syntax: GrammarSyntax = "lark") -> ResponseFormat:
        """A context-free grammar in Lark (start rule `start`) or GBNF (start rule `root`) syntax."""
        if not isinstance(text, str) or not text.strip():
            raise ConstraintError(f"response_format grammar must be non-empty grammar text, got {text!r}")
        if syntax not in ("lark", "gbnf"):
            raise ConstraintError(f"response_format grammar syntax must be 'lark' or 'gbnf', got {syntax!r}")
        return cls("grammar", text, syntax=syntax)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-style dict this format parses from."""
        if self.kind == "json_object":
            return {"type": "json_object"}
        if self.kind == "json_schema":
            inner: dict[str, Any] = {"schema": json.loads(self.source)}
            if self.name is not None:
                inner["name"] = self.name
            return {"type": "json_schema", "json_schema": inner}
        if self.kind == "regex":
            return {"type": "regex", "regex": self.source}
        return {"type": "grammar", "grammar": self.source, "syntax": self.syntax}

    def describe(self) -> str:
        """A short name for messages: `json_schema 'person'`, `regex '[0-9]+'`."""
        if self.kind == "json_schema" and self.name:
            return f"json_schema {self.name!r}"
        if self.kind == "regex":
            return f"regex {self.source[:40]!r}"
        return self.kind


def parse_response_format(value: Any) -> ResponseFormat | None:
    """The `ResponseFormat` of an OpenAI-style `response_format` value; None for no constraint.

    Accepted: None, a `ResponseFormat`, `{"type": "text"}`, `{"type": "json_object"}`,
    `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`,
    `{"type": "regex", "regex": PATTERN}` and `{"type": "grammar", "grammar": TEXT, "syntax": "lark"|"gbnf"}`.
    """
    if value is None or isinstance(value, ResponseFormat):
        return value
    if not isinstance(value, Mapping):
        raise ConstraintError(
            f"response_format must be a dict such as {{'type': 'json_object'}}, got {type(value).__name__}"
        )
    kind = value.get("type")
    if kind not in _KINDS:
        raise ConstraintError(f"response_format type must be one of {list(_KINDS)}, got {kind!r}")
    allowed = {"text": set(), "json_object": set(), "json_schema": {"json_schema"}, "regex": {"regex"}}
    extra = set(value) - {"type"} - allowed.get(kind, {"grammar", "syntax"})
    if extra:
        raise ConstraintError(f"response_format of type {kind!r} takes no key(s) {sorted(extra)}")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object", '{"type":"object"}')
    if kind == "regex":
        return ResponseFormat.regex(value.get("regex"))  # type: ignore[arg-type]
    if kind == "grammar":
        return ResponseFormat.grammar(value.get("grammar"), syntax=value.get("syntax", "lark"))  # type: ignore[arg-type]
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping) or "schema" not in spec:
        raise ConstraintError(
            "response_format json_schema needs a 'json_schema' dict holding 'schema' "
            "(and optionally 'name' and 'strict'), got " + repr(spec)[:80]
        )
    unknown = set(spec) - {"name", "schema", "strict", "description"}
    if unknown:
        raise ConstraintError(f"response_format json_schema takes no key(s) {sorted(unknown)}")
    schema = spec["schema"]
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ConstraintError(f"response_format json_schema.schema is not valid JSON: {exc}") from None
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise ConstraintError(f"response_format json_schema.name must be a string, got {name!r}")
    return ResponseFormat.json_schema(schema, name=name)
