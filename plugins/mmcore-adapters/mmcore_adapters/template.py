"""Jinja chat templates rendered as transformers' `apply_chat_template` renders them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mmcore.errors import AdapterError, InvalidInputError

__all__ = ["ChatTemplate"]


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (assistant-mask markers) renders its body unchanged."""

    tags = {"generation"}  # noqa: RUF012 - jinja2's declared class attribute

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render_body")
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return str(caller())


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


class ChatTemplate:
    """A model's chat template with the variables transformers passes (special tokens such as
    `bos_token`, `eos_token`), rendered in the same sandboxed environment."""

    def __init__(self, source: str, variables: Mapping[str, Any] | None = None, *, origin: str = "chat template"):
        self.source = source
        self.variables = dict(variables or {})
        self.origin = origin
        try:
            self._template = _compile(source)
        except jinja2.TemplateSyntaxError as exc:
            raise AdapterError(
                f"the {origin} is not a valid Jinja template (line {exc.lineno}: {exc.message}); fix the template "
                "or pass another with the adapter option chat_template"
            ) from exc

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The prompt text of `messages` (`add_generation_prompt` as in `apply_chat_template`);
        `template_kwargs` are extra template variables (``tools``, ``documents``, ``enable_thinking``...)."""
        variables = {"tools": None, "documents": None, **self.variables, **(template_kwargs or {})}
        try:
            return str(
                self._template.render(
                    **variables,
                    messages=list(messages),
                    add_generation_prompt=add_generation_prompt,
                )
            )
        except jinja2.TemplateError as exc:
            raise InvalidInputError(f"the {self.origin} rejected the conversation: {exc}") from exc
