"""Parallel slots: one runner (own KV cache, shared tokenizer and settings) per slot, and the routing
of each request to the slot whose cached conversation shares the longest prefix with it.

Within a slot, `Session` does the position-level longest-common-prefix reuse; the pool only picks
the slot, from message fingerprints (media keyed by content), with `choose_slot`, a pure function.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from mmcore.adapters import RendererContext, RunnerMediaEncoder
from mmcore.chat import PlainRenderer
from mmcore.chat_model import ChatModel
from mmcore.program import Program
from mmcore.runner import MultimodalRunner
from mmcore.serve.errors import APIError
from mmcore.session import Session, common_prefix

__all__ = ["Slot", "SlotPool", "choose_slot", "fingerprint", "replica_runner"]

SessionKind = Literal["chat", "text"]
_MAX_PINS = 4096


@dataclass
class Slot:
    """One runner and the conversations its KV cache may hold.

    `chat` renders with the model's adapter, `text` prefills plain prompts; only the session used
    last owns the KV cache (switching resets the other). `keys` fingerprints what `chat`/`text` holds.
    """

    index: int
    runner: MultimodalRunner
    chat: Session
    text: Session
    keys: list[str] = field(default_factory=list)
    owner: SessionKind = "chat"
    last_used: float = 0.0
    session_id: str | None = None

    def session(self, kind: SessionKind, *, prefix_cache: bool = True) -> Session:
        """The session of `kind`, owning the KV cache (reset when the cache is off or it was not the owner)."""
        session = self.chat if kind == "chat" else self.text
        if kind != self.owner or not prefix_cache:
            (self.text if kind == "chat" else self.chat).reset()
            session.reset()
            self.keys = []
            self.owner = kind
        return session


def fingerprint(messages: Sequence[Mapping[str, Any]], kind: SessionKind = "chat") -> list[str]:
    """One digest per message (role, content, tool calls); media bytes are hashed by content."""
    out = []
    for message in messages:
        shown = {key: message.get(key) for key in ("role", "content", "tool_calls", "tool_call_id")}
        text = json.dumps([kind, shown], sort_keys=True, default=_media_key, ensure_ascii=False)
        out.append(hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest())
    return out


def _media_key(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes:" + hashlib.blake2b(bytes(value), digest_size=16).hexdigest()
    if isinstance(value, Path):
        stat = value.stat() if value.exists() else None
        return f"path:{value}:{stat.st_mtime_ns if stat else 0}:{stat.st_size if stat else 0}"
    return f"object:{type(value).__name__}:{id(value)}"  # not content-keyed: never shared


def choose_slot(cached: Sequence[Sequence[str]], last_used: Sequence[float], key: Sequence[str]) -> int:
    """The index of the slot whose cached fingerprints share the longest prefix with `key`;
    among equals, the one used least recently (so unrelated requests evict the oldest conversation)."""
    if not cached:
        raise ValueError("choose_slot needs at least one candidate")
    best = max(range(len(cached)), key=lambda i: (common_prefix(cached[i], key), -last_used[i]))
    return best


def replica_runner(model: ChatModel) -> tuple[MultimodalRunner, Any]:
    """A second runner of `model`'s program (its own KV cache) and a chat renderer bound to it.

    The program file is opened again (ExecuTorch maps its constant data, so the weights' pages
    are shared by the OS); tokenizer, settings, stop tokens, generation defaults and the encoder
    cache (thread-safe, keyed by content) are the model's, so an image any slot has encoded is
    encoded once and held once.
    """
    base = model.runner
    program = Program(base.program.path, data_path=base.program.data_path, native=base.program.native)
    runner = MultimodalRunner(
        program,
        base.tokenizer,
        plugin_manager=base.plugin_manager,
        modality_settings=base.modality_settings,
        encoder_cache=base.encoder_cache if base.encoder_cache is not None else False,
    )
    runner.metadata = base.metadata
    runner.generation_config = base.generation_config
    registry = base._plugins().modality_registry()
    renderer = model.profile.make_renderer(RendererContext(registry=registry, encoder=RunnerMediaEncoder(runner)))
    return runner, renderer


class _Waiter:
    """A request waiting for a slot: woken by `give` from whichever thread releases one."""

    def __init__(
        self, key: list[str], session_id: str | None, pinned: Slot | None, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.key = key
        self.session_id = session_id
        self.pinned = pinned
        self.slot: Slot | None = None
        self._loop = loop
        self._future: asyncio.Future[Slot] | None = loop.create_future() if loop is not None else None
        self._event = threading.Event()

    def give(self, slot: Slot) -> None:
        self.slot = slot
        if self._future is not None and self._loop is not None:
            future = self._future
            self._loop.call_soon_threadsafe(_resolve, future, slot)
        else:
            self._event.set()


def _resolve(future: asyncio.Future[Slot], slot: Slot) -> None:
    if not future.done():
        future.set_result(slot)


class SlotPool:
    """Slots handed out one request at a time, with a bounded FIFO queue of waiting requests.

    `session_id` pins a conversation to the slot it first ran on (it waits for that slot).
    More than `max_queue` waiting requests get a 429.
    """

    def __init__(self, model: ChatModel, parallel: int = 1, *, max_queue: int = 64) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.model = model
        self.max_queue = max_queue
        registry = model.runner._plugins().modality_registry()
        self.slots: list[Slot] = []
        for index in range(parallel):
            runner, renderer = (model.runner, model.renderer) if index == 0 else replica_runner(model)
            runner.load()
            self.slots.append(
                Slot(
                    index, runner, Session(runner, renderer=renderer), Session(runner, renderer=PlainRenderer(registry))
                )
            )
        self._free: list[Slot] = list(self.slots)
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._pins: dict[str, Slot] = {}
        self._lock = threading.Lock()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiting)

    @property
    def busy(self) -> int:
        """Slots serving a request."""
        return len(self.slots) - len(self._free)

    @overload
    def acquire(self, key: list[str], session_id: str | None = None) -> Slot: ...
    @overload
    def acquire(self, key: list[str], session_id: str | None = None, *, timeout: float | None) -> Slot | None: ...

    def acquire(self, key: list[str], session_id: str | None = None, *, timeout: float | None = None) -> Slot | None:
        """A slot for a request (blocks the calling thread while all are busy); None when `timeout`
        seconds pass first (the request leaves the queue)."""
        waiter = self._enter(key, session_id, None)
        if waiter.slot is None and not waiter._event.wait(timeout if timeout is None else max(timeout, 0.0)):
            with self._lock:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                    return None
        assert waiter.slot is not None  # handed over (perhaps just as the wait ended)
        return waiter.slot

    async def aacquire(self, key: list[str], session_id: str | None = None) -> Slot:
        """A slot for a request, awaited on the event loop (cancelling gives up the place in the queue)."""
        waiter = self._enter(key, session_id, asyncio.get_running_loop())
        if waiter.slot is not None:
            return waiter.slot
        assert waiter._future is not None
        try:
            return await waiter._future
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                    raise
            if waiter.slot is not None:  # handed over while we were being cancelled
                self.release(waiter.slot)
            raise

    def release(self, slot: Slot) -> None:
        """Give `slot` back (to the first waiter that may take it)."""
        with self._lock:
            slot.last_used = time.monotonic()
            for waiter in self._waiting:
                if waiter.pinned is None or waiter.pinned is slot:
                    self._waiting.remove(waiter)
                    self._assign(waiter, slot)
                    return
            self._free.append(slot)

    def _enter(self, key: list[str], session_id: str | None, loop: asyncio.AbstractEventLoop | None) -> _Waiter:
        with self._lock:
            pinned = self._pins.get(session_id) if session_id else None
            waiter = _Waiter(key, session_id, pinned, loop)
            candidates = [s for s in self._free if pinned is None or s is pinned]
            if candidates:
                index = choose_slot([s.keys for s in candidates], [s.last_used for s in candidates], key)
                slot = candidates[index]
                self._free.remove(slot)
                self._assign(waiter, slot)
                return waiter
            if len(self._waiting) >= self.max_queue:
                raise APIError(
                    429,
                    f"all {len(self.slots)} slots are busy and {len(self._waiting)} requests are queued "
                    "(the limit); retry later",
                    type="rate_limit_error",
                    code="queue_full",
                )
            self._waiting.append(waiter)
            return waiter

    def _assign(self, waiter: _Waiter, slot: Slot) -> None:
        """Hand `slot` to `waiter` (under the lock); a new session id is pinned to it."""
        if waiter.session_id and waiter.session_id not in self._pins:
            self._pins[waiter.session_id] = slot
            while len(self._pins) > _MAX_PINS:  # forget the oldest conversations
                self._pins.pop(next(iter(self._pins)))
        waiter.give(slot)
