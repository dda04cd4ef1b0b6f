"""Chat renderers: a conversation -> token segments and media items, as the model's processor makes them.

`TemplateRenderer` renders the chat template to text, expands each media marker to the model's
placeholder sequence, tokenizes the text once and splits it at the placeholder runs. Assistant
messages carrying ``"tokens"`` are spliced in as those ids (never re-tokenised).
`SegmentRenderer` builds prompts from text segments tokenized one by one (ExecuTorch's examples).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.adapters import (
    MediaEncoder,
    MediaSpan,
    RenderedPrompt,
    RendererContext,
    check_media_limits,
    check_prompt_fits,
)
from mmcore.chat import Message, content_parts, part_to_input
from mmcore.errors import InvalidInputError
from mmcore.inputs import TokensInput
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.template import ChatTemplate

__all__ = ["Counter", "LayoutPiece", "MediaRule", "SegmentRenderer", "TemplateRenderer", "fixed_count"]

#: Given a media item, the item to feed the plugin and its number of placeholder tokens.
Counter = Callable[[Any], tuple[Any, int]]
_SENTINEL = "\ue000mmcore-replay-{}\ue001"
_SENTINEL_RE = re.compile("\ue000mmcore-replay-(\\d+)\ue001")


def fixed_count(n: int) -> Counter:
    """A counter for media that always take `n` placeholder tokens (images of a fixed-size encoder)."""

    def count(item: Any) -> tuple[Any, int]:
        return item, n

    return count


@dataclass(frozen=True)
class MediaRule:
    """How one modality appears in a prompt.

    Fields:
        kind: the modality ("image", "audio").
        marker: what the chat template renders for one item (e.g. ``"<start_of_image>"``).
        placeholder: the placeholder token string; `placeholder_id` its id.
        expand: the text that replaces one marker, given the item's placeholder count.
        count: the item to feed and its placeholder count.
        layout: for media one item of which prefills as several spans (SmolVLM's image tiles):
            given the item, its ``(span item, placeholder count)`` pieces in prompt order and the
            text replacing its marker (used instead of `count` and `expand`).
    """

    kind: str
    marker: str
    placeholder_id: int
    expand: Callable[[int], str]
    count: Counter
    layout: Callable[[Any], tuple[list[tuple[Any, int]], str]] | None = None

    def pieces(self, item: Any) -> tuple[list[tuple[Any, int]], str]:
        """The spans one media item prefills as and the text replacing its marker."""
        if self.layout is not None:
            return self.layout(item)
        fed, n = self.count(item)
        return [(fed, n)], self.expand(n)


#: A media item of a conversation: its kind, the spans it prefills as, the text replacing its marker.
_Media = tuple[str, list[tuple[Any, int]], str]


@dataclass
class _Replay:
    ids: list[int]


class _PromptRendering:
    """`render` for renderers that build a `RenderedPrompt` first (the subclass's `render_prompt`)."""

    context: RendererContext
    program: str | Path

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> RenderedPrompt:
        raise NotImplementedError

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Ordered runner inputs; media become embeddings (checked) when an encoder is bound.
        `template_kwargs` (``tools``, ...) are passed to the chat template."""
        prompt = self.render_prompt(
            messages, add_generation_prompt=add_generation_prompt, template_kwargs=template_kwargs
        )
        encoder = self.context.encoder
        if encoder is None:
            return prompt.inputs()
        check_prompt_fits(prompt, self.context.max_positions, program=self.program)
        return _encoded(prompt, encoder)


class TemplateRenderer(_PromptRendering):
    """Renders a conversation through a chat template, tokenized once, split at placeholder runs."""

    def __init__(
        self,
        template: ChatTemplate,
        tokenizer: Tokenizer,
        context: RendererContext,
        rules: Sequence[MediaRule],
        *,
        bos_token: str | None,
        add_bos: bool,
        stop_ids: frozenset[int] = frozenset(),
        limits: Mapping[str, int] | None = None,
        program: str | Path = "this program",
    ) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.context = context
        self.rules = {rule.kind: rule for rule in rules}
        self.bos_token = bos_token
        self.add_bos = add_bos
        self.stop_ids = stop_ids
        self.limits = dict(limits or {})
        self.program = program
        markers = sorted({rule.marker for rule in rules}, key=len, reverse=True)
        pattern = "|".join([*(re.escape(m) for m in markers), "\ue000mmcore-replay-\\d+\ue001"])
        self._scan = re.compile(f"({pattern})")
        self._by_marker = {rule.marker: rule for rule in rules}

    # -- Renderer ------------------------------------------------------------------------------
    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> RenderedPrompt:
        """Token segments and media spans; the ids equal the model's processor output."""
        shown, media, replays = self._prepare(messages)
        text = self.template.render(shown, add_generation_prompt=add_generation_prompt, template_kwargs=template_kwargs)
        chunks = self._expand(text, media, replays)
        ids: list[int] = []
        if (
            self.add_bos
            and self.tokenizer.bos_id is not None
            and not (self.bos_token and text.startswith(self.bos_token))
        ):
            ids.append(self.tokenizer.bos_id)
        runs: list[list[int] | _Replay] = []
        for chunk in chunks:
            if isinstance(chunk, _Replay):
                runs.append(chunk)
            elif chunk:
                runs.append(self.tokenizer.encode(chunk))
        parts: list[TokensInput | MediaSpan] = []
        queue = {kind: [piece for k, pieces, _ in media if k == kind for piece in pieces] for kind in self.rules}
        for run in runs:
            if isinstance(run, _Replay):
                ids.extend(run.ids)  # replayed ids are never scanned for placeholders
            else:
                ids = self._split(ids, run, queue, parts)
        if ids:
            parts.append(TokensInput(ids))
        leftover = {kind: len(items) for kind, items in queue.items() if items}
        if leftover:
            raise InvalidInputError(
                f"the rendered prompt lost {leftover} media item(s): the chat template did not place their "
                "placeholders; check the message content parts' 'type' values"
            )
        prompt = RenderedPrompt(tuple(parts))
        check_media_limits(prompt, self.limits, program=self.program)
        return prompt

    # -- steps -----------------------------------------------------------------------------------
    def _prepare(self, messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[_Media], list[list[int]]]:
        """Template messages (replays as sentinels), media (kind, spans, marker text) in order, replay ids."""
        shown: list[dict[str, Any]] = []
        media: list[_Media] = []
        replays: list[list[int]] = []
        registry = self.context.registry
        for index, message in enumerate(messages):
            parts = content_parts(message, index)
            if message.get("role") == "assistant" and "tokens" in message:
                ids = [int(i) for i in message["tokens"]]
                while ids and ids[-1] in self.stop_ids:  # the template writes its own end-of-turn
                    ids.pop()
                shown.append({**message, "content": _SENTINEL.format(len(replays))})
                replays.append(ids)
                continue
            for number, part in enumerate(parts):
                kind = part["type"]
                where = f"message {index} part {number}"
                if kind in self.rules:
                    media.append((kind, *self.rules[kind].pieces(part_to_input(part, registry, where))))
                elif kind != "text":
                    raise InvalidInputError(
                        f"{where}: this model's chat template takes text and {sorted(self.rules) or 'no media'} "
                        f"parts, not {kind!r}"
                    )
            # the template sees the parts in canonical form ("image_url" -> "image", ...)
            shown.append(dict(message) if isinstance(message.get("content"), str) else {**message, "content": parts})
        return shown, media, replays

    def _expand(self, text: str, media: list[_Media], replays: list[list[int]]) -> list[str | _Replay]:
        """The rendered text with markers expanded, cut at the replayed assistant turns."""
        counts = {kind: [expanded for k, _, expanded in media if k == kind] for kind in self.rules}
        used = dict.fromkeys(self.rules, 0)
        chunks: list[str | _Replay] = []
        current: list[str] = []
        for index, piece in enumerate(self._scan.split(text)):
            if index % 2 == 0:
                current.append(piece)
                continue
            replay = _SENTINEL_RE.fullmatch(piece)
            if replay is not None:
                chunks.append("".join(current))
                current = []
                chunks.append(_Replay(replays[int(replay.group(1))]))
                continue
            rule = self._by_marker[piece]
            number = used[rule.kind]
            if number >= len(counts[rule.kind]):
                raise InvalidInputError(
                    f"the rendered prompt holds more {rule.marker!r} markers than the conversation has {rule.kind} "
                    f"items ({len(counts[rule.kind])}); a text part contains {rule.marker!r}: remove it from the text"
                )
            used[rule.kind] = number + 1
            current.append(counts[rule.kind][number])
        chunks.append("".join(current))
        for kind, total in counts.items():
            if used[kind] != len(total):
                raise InvalidInputError(
                    f"the chat template placed {used[kind]} {kind} markers for {len(total)} {kind} items; "
                    "this template does not support the conversation's media layout"
                )
        return chunks

    def _split(
        self,
        prefix: list[int],
        run: list[int],
        queue: dict[str, list[tuple[Any, int]]],
        parts: list[TokensInput | MediaSpan],
    ) -> list[int]:
        """Move the text and media spans of `prefix + run` into `parts` (only `run` is scanned for
        placeholders); return the ids after the last media span."""
        by_id = {rule.placeholder_id: rule for rule in self.rules.values()}
        pending = list(prefix)
        start = i = 0
        while i < len(run):
            rule = by_id.get(run[i])
            if rule is None:
                i += 1
                continue
            if not queue[rule.kind]:
                raise InvalidInputError(
                    f"the prompt holds {rule.kind} placeholder tokens (id {rule.placeholder_id}) with no {rule.kind} "
                    "item left: a text part contains the placeholder token's text; remove it"
                )
            item, count = queue[rule.kind].pop(0)
            span = run[i : i + count]
            if len(span) != count or any(t != rule.placeholder_id for t in span):
                raise InvalidInputError(
                    f"the prompt has a run of {rule.kind} placeholders that does not match the {count} expected; "
                    "a text part next to the media contains the placeholder token's text"
                )
            pending += run[start:i]
            if pending:
                parts.append(TokensInput(pending))
                pending = []
            parts.append(MediaSpan(rule.kind, item, count, rule.placeholder_id))
            i += count
            start = i
        return pending + run[start:]


#: One piece of a segment layout: text, a media part ``(kind, part)``, or ids replayed as they are.
LayoutPiece = str | tuple[str, Mapping[str, Any]] | TokensInput


class SegmentRenderer(_PromptRendering):
    """Renders a conversation as text segments, each tokenized on its own, around media embeddings.

    `layout(messages, add_generation_prompt)` gives text, ``(kind, part)`` media tuples and
    `TokensInput` replays in order; consecutive texts are joined and tokenized together, the
    first one with BOS when `add_bos`.
    """

    def __init__(
        self,
        layout: Callable[[Sequence[Message], bool], list[LayoutPiece]],
        tokenizer: Tokenizer,
        context: RendererContext,
        *,
        rows: Mapping[str, int | None],
        add_bos: bool,
        limits: Mapping[str, int] | None = None,
        program: str | Path = "this program",
    ) -> None:
        self.layout = layout
        self.tokenizer = tokenizer
        self.context = context
        self.rows = dict(rows)
        self.add_bos = add_bos
        self.limits = dict(limits or {})
        self.program = program

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> RenderedPrompt:
        """Token segments (one per run of text) and media spans. This renderer has no chat template,
        so `template_kwargs` (``tools``, ...) are refused."""
        if template_kwargs:
            raise InvalidInputError(
                f"template arguments {sorted(template_kwargs)} need a chat template, but this model's prompt "
                "format has none (use an adapter with a chat template)"
            )
        parts: list[TokensInput | MediaSpan] = []
        ids: list[int] = []
        text: list[str] = []
        first = True

        def flush_text() -> None:
            nonlocal first
            if text:
                ids.extend(self.tokenizer.encode("".join(text), bos=1 if first and self.add_bos else 0))
                text.clear()
                first = False

        for number, piece in enumerate(self.layout(messages, add_generation_prompt)):
            if isinstance(piece, str):
                text.append(piece)
                continue
            flush_text()
            if isinstance(piece, TokensInput):
                ids.extend(piece.ids)
                first = False
                continue
            if ids:
                parts.append(TokensInput(ids))
                ids = []
            kind, part = piece
            item = part_to_input(part, self.context.registry, f"media item {number}")
            parts.append(MediaSpan(kind, item, self.rows.get(kind)))
            first = False
        flush_text()
        if ids:
            parts.append(TokensInput(ids))
        prompt = RenderedPrompt(tuple(parts))
        check_media_limits(prompt, self.limits, program=self.program)
        return prompt


def _encoded(prompt: RenderedPrompt, encoder: MediaEncoder) -> list[Any]:
    """The prompt's parts with each media span replaced by its checked embeddings."""
    out: list[Any] = []
    number = 0
    for part in prompt.parts:
        if isinstance(part, MediaSpan):
            out.append(encoder(part, where=f"{part.kind} item {number}"))
            number += 1
        else:
            out.append(part)
    return out
