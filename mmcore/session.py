"""Conversations that never recompute: only what is not already in the KV cache is prefilled."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mmcore.chat import Message, PlainRenderer, Renderer
from mmcore.config import GenerationConfig
from mmcore.errors import ContextOverflowError, RunnerStateError
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.prefill import Segment
from mmcore.runner import GenerationResult, MultimodalRunner, PieceCallback, TokenCallback

__all__ = ["Session", "ContextPolicy", "common_prefix"]

ContextPolicy = Literal["error", "sliding"]
_Key = int | tuple[str, int]  # a token id, or (embeddings digest, row)


@dataclass
class _Rendered:
    segments: list[Segment]
    keys: list[_Key]


class Session:
    """A multi-turn conversation over a `MultimodalRunner`.

    Each `send` renders the whole conversation, compares it position by position with what the KV
    cache holds, rewinds to the longest common prefix and prefills only the rest (media already
    seen come from the runner's encoder cache). Edited or truncated history rewinds the same way.
    A failed or cancelled turn leaves the session as it was before the call (a cancelled turn keeps
    the tokens generated until the cancellation, as if it had ended there).

    `context_policy`: "error" raises `ContextOverflowError` when the next turn does not fit;
    "sliding" drops the oldest non-system messages until it does, and re-prefills.
    """

    def __init__(
        self,
        runner: MultimodalRunner,
        *,
        renderer: Renderer | None = None,
        context_policy: ContextPolicy = "error",
        system: str | None = None,
    ) -> None:
        if context_policy not in ("error", "sliding"):
            raise ValueError(f"context_policy must be 'error' or 'sliding', got {context_policy!r}")
        self.runner = runner
        runner.load()
        self.renderer = renderer or PlainRenderer(runner._plugins().modality_registry())
        self.context_policy = context_policy
        self.messages: list[Message] = [{"role": "system", "content": system}] if system else []
        self._cached: list[_Key] = []  # what the KV cache holds, position by position
        self._lock = threading.Lock()
        runner.reset()

    # -- history ---------------------------------------------------------------------------------
    def set_history(self, messages: Sequence[Message]) -> None:
        """Replace the conversation; the next `send` reuses the cache up to the common prefix."""
        self.messages = [dict(m) for m in messages]

    def truncate(self, n_messages: int) -> None:
        """Keep only the first `n_messages` messages."""
        self.messages = self.messages[:n_messages]

    def reset(self) -> None:
        """Forget the conversation and the cached prefix."""
        self.messages = [m for m in self.messages if m.get("role") == "system"][:1]
        self._cached = []
        self.runner.reset()

    @property
    def cached_positions(self) -> int:
        return len(self._cached)

    # -- turns -----------------------------------------------------------------------------------
    def send(
        self,
        message: Message | str | None,
        config: GenerationConfig | None = None,
        token_callback: TokenCallback | None = None,
        *,
        piece_callback: PieceCallback | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> GenerationResult:
        """Add a user message (a string is a text message; None answers the history as it is),
        generate the reply, and append it to the history.

        `template_kwargs` (e.g. ``tools``) go to the chat template, for renderers that take them.
        """
        if not self._lock.acquire(blocking=False):
            raise RunnerStateError("this session is already generating; sessions serve one turn at a time")
        try:
            return self._send(message, config, token_callback, piece_callback, template_kwargs)
        finally:
            self._lock.release()

    def _send(
        self,
        message: Message | str | None,
        config: GenerationConfig | None,
        token_callback: TokenCallback | None,
        piece_callback: PieceCallback | None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> GenerationResult:
        config = config if config is not None else self.runner.generation_config
        counted = encoder_cache_counts(self.runner)  # the renderer may encode media too
        messages = list(self.messages)
        if message is not None:
            messages.append({"role": "user", "content": message} if isinstance(message, str) else dict(message))
        dropped = 0
        while True:
            try:
                rendered = self._render(messages, config, template_kwargs)
            except ContextOverflowError:  # the renderer refused it before encoding its media
                if self.context_policy == "error" or not self._drop_oldest(messages):
                    raise
                dropped += 1
                continue
            need = len(rendered.keys) + 1
            if need < self.runner.metadata.max_context_len:
                break
            if self.context_policy == "error" or not self._drop_oldest(messages):
                raise ContextOverflowError(
                    f"the conversation needs {len(rendered.keys)} positions but the context holds "
                    f"{self.runner.metadata.max_context_len}; truncate the history, reset(), or use "
                    "context_policy='sliding'"
                )
            dropped += 1
        reuse = common_prefix(self._cached, rendered.keys)
        reuse = min(reuse, len(rendered.keys) - 1)  # at least one position to prefill
        todo = _segments_from(rendered.segments, reuse)
        runner = self.runner
        runner.pos = reuse
        runner._pending_logits = None
        try:
            result = runner.generate(
                todo, config.replace(num_bos=0, num_eos=0, echo=False), token_callback, piece_callback=piece_callback
            )
        except BaseException:
            self._cached = self._cached[:reuse]  # rows past the prefix may have been overwritten
            runner.pos = len(self._cached)
            raise
        self._cached = rendered.keys + list(result.tokens[:-1])
        assert runner.pos == len(self._cached)
        messages.append({"role": "assistant", "content": result.text, "tokens": list(result.tokens)})
        self.messages = messages
        result.stats.extra.update(
            new_prompt_tokens=len(rendered.keys) - reuse,
            reused_prompt_tokens=reuse,
            dropped_messages=dropped,
            **encoder_cache_delta(runner, counted),
        )
        return result

    def _render(
        self, messages: Sequence[Message], config: GenerationConfig, template_kwargs: Mapping[str, Any] | None = None
    ) -> _Rendered:
        extra = {"template_kwargs": template_kwargs} if template_kwargs else {}
        inputs = self.renderer.render(messages, add_generation_prompt=True, **extra)
        runner = self.runner
        segments = runner.prefiller.prepare(
            inputs, start_pos=0, num_bos=config.num_bos, num_eos=config.num_eos, bos_id=runner.metadata.bos_id
        )
        keys: list[_Key] = []
        for segment in segments:
            if isinstance(segment, TokensInput):
                keys.extend(segment.ids)
            else:
                digest = _digest(segment.embeddings)
                keys.extend((digest, row) for row in range(len(segment)))
        return _Rendered(segments, keys)

    def _drop_oldest(self, messages: list[Message]) -> bool:
        """Remove the oldest user turn and its answer (system messages stay); False if none left."""
        for i, m in enumerate(messages[:-1]):
            if m.get("role") != "system":
                del messages[i]
                while i < len(messages) - 1 and messages[i].get("role") == "assistant":
                    del messages[i]
                return True
        return False


def encoder_cache_counts(runner: MultimodalRunner) -> tuple[int, float]:
    """The runner's running encoder-cache totals (hits, seconds saved); loads the runner."""
    runner.load()
    return runner.prefiller.total_cache_hits, runner.prefiller.total_cache_saved_s


def encoder_cache_delta(runner: MultimodalRunner, before: tuple[int, float]) -> dict[str, Any]:
    """`encoder_cache_hits` / `encoder_cache_saved_s` of everything since `before` (one turn:
    its rendering and its prefill), for `stats.extra`."""
    hits, saved = encoder_cache_counts(runner)
    return {"encoder_cache_hits": hits - before[0], "encoder_cache_saved_s": saved - before[1]}


def common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _segments_from(segments: Sequence[Segment], start: int) -> list[Any]:
    """The segments' positions from `start` on (segments cut where the prefix ends)."""
    out: list[Any] = []
    pos = 0
    for segment in segments:
        length = len(segment)
        if pos + length > start:
            skip = max(0, start - pos)
            if isinstance(segment, TokensInput):
                out.append(TokensInput(segment.ids[skip:]) if skip else segment)
            else:
                out.append(EmbeddingsInput(segment.embeddings[:, skip:]) if skip else segment)
        pos += length
    return out


def _digest(embeddings: npt.NDArray[Any]) -> str:
    return hashlib.blake2b(np.ascontiguousarray(embeddings).tobytes(), digest_size=16).hexdigest()
