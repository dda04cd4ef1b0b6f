"""Jinja chat templates rendered as transformers' `apply_chat_template` renders them (jinja2 is
imported with the first template)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmcore.errors import AdapterError, InvalidInputError

__all__ = ["ChatTemplate"]


class ChatTemplate:
    """A model's chat template with the variables transformers passes (special tokens such as
    `bos_token`, `eos_token`), rendered in the same sandboxed environment."""

    def __init__(self, source: str, variables: Mapping[str, Any] | None = None, *, origin: str = "chat template"):
        self.source = source
        self.variables = dict(variables or {})
        self.origin = origin
        import jinja2

        from mmcore_adapters._jinja import compile_template

        try:
            self._template = compile_template(source)
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
        import jinja2

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
