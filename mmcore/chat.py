"""Chat messages in the content-parts style and their rendering into ordered runner inputs.

A message is ``{"role": "user", "content": "text" | [parts]}`` with parts such as
``{"type": "text", "text": ...}``, ``{"type": "image", "image": <path|bytes|PIL|array>}``,
``{"type": "audio", "audio": <path|bytes|array>, "sample_rate": 16000}`` or
``{"type": "tokens", "tokens": [ids]}``. An assistant message produced by a `Session` carries the
generated ids as ``"tokens"``, so history is never re-tokenised from text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from mmcore.content import normalize_part, plugin_for_kind
from mmcore.errors import InvalidInputError, UnsupportedInputError
from mmcore.inputs import TokensInput
from mmcore.registry import ModalityRegistry

__all__ = ["Message", "Renderer", "PlainRenderer", "content_parts", "part_to_input"]

Message = Mapping[str, Any]


@runtime_checkable
class Renderer(Protocol):
    """Turns a conversation into the ordered inputs a `MultimodalRunner` prefills."""

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[Any]:
        """Inputs for the whole conversation (text as str or `TokensInput`, media as plugin inputs)."""


def content_parts(message: Message, index: int) -> list[Mapping[str, Any]]:
    """The content of a message as a list of parts (a plain string is one text part)."""
    if not isinstance(message, Mapping) or "role" not in message:
        raise InvalidInputError(f"message {index} must be a mapping with 'role' and 'content', got {message!r:.80}")
    content = message.get("content", "")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, Sequence) or not all(isinstance(p, Mapping) and "type" in p for p in content):
        raise InvalidInputError(
            f"message {index} content must be a string or a list of parts like {{'type': 'text', 'text': ...}}"
        )
    return [normalize_part(part, where=f"message {index} part {number}") for number, part in enumerate(content)]


def part_to_input(part: Mapping[str, Any], registry: ModalityRegistry, where: str) -> Any:
    """The runner input of one content part (text stays a str; media goes to its plugin)."""
    kind = part["type"]
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidInputError(f"{where}: a text part needs a 'text' string")
        return text
    if kind == "tokens":
        return TokensInput(part.get("tokens", ()))
    handler = registry.get(kind)
    if handler is None:
        plugin = plugin_for_kind(kind)
        fix = (
            f"install {plugin}: pip install {plugin}"
            if plugin is not None
            else "install a plugin that registers it; `mmcore plugins` lists what is installed"
        )
        raise UnsupportedInputError(f"{where}: no installed plugin handles '{kind}' content ({fix})")
    from_content = getattr(handler, "from_content", None)
    if callable(from_content):
        return from_content(part)
    value = part.get(kind)
    if isinstance(value, handler.input_types):
        return value
    parse = getattr(handler, "parse_cli", None)
    if callable(parse) and isinstance(value, (str, os.PathLike)):
        return parse(str(value))
    raise InvalidInputError(f"{where}: the '{kind}' plugin cannot take a {type(value).__name__} value")


class PlainRenderer:
    """Renders a conversation without a chat template: each message's parts in order.

    For models without a template (ExecuTorch's generic contract). Assistant messages with
    ``"tokens"`` are replayed as those ids.
    """

    def __init__(self, registry: ModalityRegistry) -> None:
        self.registry = registry

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[Any]:
        inputs: list[Any] = []
        for index, message in enumerate(messages):
            if message.get("role") == "assistant" and "tokens" in message:
                inputs.append(TokensInput(message["tokens"]))
                continue
            for number, part in enumerate(content_parts(message, index)):
                inputs.append(part_to_input(part, self.registry, f"message {index} part {number}"))
        return inputs
