"""The completion service: OpenAI request bodies in, OpenAI response bodies (or stream chunks) out.

HTTP-free and usable in-process (the server's routes and `mmcore batch` both call it)::

    service = ChatService(mmcore.open_model("model.pte"), model_id="tiny")
    body = service.chat_completion({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
    for chunk in service.stream_chat_completion({...}):      # chat.completion.chunk dicts
        ...
    body = await service.achat_completion({...})             # and astream_chat_completion(...)
    body = service.completion({"prompt": "Once upon", "max_tokens": 8})   # text_completion

Errors are raised as `APIError` (HTTP status plus OpenAI's error envelope in `.body()`), before the
first chunk of a stream when they concern the request. Each request runs on one of the pool's slots
(`slots.py`); the blocking token loop runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from mmcore.chat_model import ChatModel
from mmcore.config import GenerationConfig
from mmcore.content import MediaPolicy, normalize_messages
from mmcore.errors import MMCoreError
from mmcore.runner import GenerationResult, Piece
from mmcore.serve.constrained import forced_tools, request_format, tool_call_format
from mmcore.serve.errors import APIError, api_error_from, from_validation_error
from mmcore.serve.metrics import Metrics
from mmcore.serve.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    FunctionCall,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    ResponseMessage,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
    new_id,
)
from mmcore.serve.slots import SessionKind, Slot, SlotPool, fingerprint
from mmcore.serve.tools import ParsedCall, ToolParser, ToolStream, tool_parser_for

__all__ = ["ChatService", "Body"]

logger = logging.getLogger(__name__)

#: A request body: the parsed JSON object, or the protocol model.
Body = Mapping[str, Any] | BaseModel
FinishReason = Literal["stop", "length"]
_FINISH: dict[str, FinishReason] = {"eos": "stop", "stop_string": "stop", "stopped": "stop", "length": "length"}
_DONE = object()
_MAX_TOKEN_TEXTS = 1 << 18
_NO_CHANCE = -9999.0


@dataclass
class _Job:
    """One validated request, ready to run on a slot."""

    kind: SessionKind
    id: str
    messages: list[Any]
    config: GenerationConfig
    key: list[str]
    session_id: str | None
    include_usage: bool = False
    tools: ToolParser | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    echo: str = ""
    arrived: float = field(default_factory=time.perf_counter)
    created: int = field(default_factory=lambda: int(time.time()))
    deadline: float | None = None  # perf_counter() past which the request fails with a 504

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.perf_counter()


@dataclass
class _Outcome:
    result: GenerationResult
    prompt_tokens: int
    cached_tokens: int

    @property
    def usage(self) -> Usage:
        completion = len(self.result.tokens)
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion,
            total_tokens=self.prompt_tokens + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens),
        )


class ChatService:
    """Chat and text completions for one loaded model, over `parallel` slots.

    Args:
        model: the loaded model (its runner becomes slot 0; more slots open the program again).
        model_id: the id clients name (`model` in requests); default: the program's file stem.
        parallel: slots, each with its own KV cache; requests beyond them wait in a queue.
        max_queue: most waiting requests (a 429 beyond).
        prefix_cache: reuse the longest common prefix of a slot's cached conversation (off: each
            request is prefilled from scratch).
        media: where media may come from (default: data URIs and any local file).
        tool_parser: the tool-call format (default: the adapter family's; see `tools.py`).
        metrics: where request metrics go (a fresh `Metrics` by default).
        request_timeout: seconds a request may take from its arrival, waiting for a slot included;
            past it the generation stops (checked after each token), the slot is freed and the
            request fails with a 504 `APIError` (None: no limit).
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        model_id: str | None = None,
        parallel: int = 1,
        max_queue: int = 64,
        prefix_cache: bool = True,
        media: MediaPolicy | None = None,
        tool_parser: str | None = None,
        metrics: Metrics | None = None,
        request_timeout: float | None = None,
    ) -> None:
        if request_timeout is not None and not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds (or None: no limit), got {request_timeout}")
        self.request_timeout = request_timeout
        self.model = model
        self.model_id = model_id or Path(model.runner.program.path).stem
        self.prefix_cache = prefix_cache
        self.media = media if media is not None else MediaPolicy()
        self.tool_parser = tool_parser_for(model.name, tool_parser)
        self.pool = SlotPool(model, parallel, max_queue=max_queue)
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.watch(lambda: self.pool.queue_depth, lambda: self.pool.busy)
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mmcore-serve")
        self._renderer_takes_kwargs = _takes_template_kwargs(model.renderer)
        self._texts: dict[int, str] = {}  # token id -> its text, for logprobs

    # -- public API ------------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` body."""
        card = ModelCard(id=self.model_id, max_model_len=self.model.runner.metadata.max_context_len)
        return ModelList(data=[card]).model_dump()

    def chat_completion(self, body: Body, *, session_id: str | None = None, token_ids: bool = False) -> dict[str, Any]:
        """A ``chat.completion`` body (blocks until a slot is free and the answer is complete).
        `token_ids`: add the generated ids as ``body["mmcore"]["token_ids"]`` (what `mmcore batch` writes)."""
        job = self.prepare_chat(body, session_id=session_id)
        outcome = self._run_blocking(job)
        return _with_token_ids(self._chat_body(job, outcome), outcome, token_ids)

    def stream_chat_completion(self, body: Body, *, session_id: str | None = None) -> Iterator[dict[str, Any]]:
        """``chat.completion.chunk`` bodies: the role first, content deltas, the finish reason, then
        usage when ``stream_options.include_usage``. Closing the iterator stops generation."""
        job = self.prepare_chat(body, session_id=session_id)
        return self._stream_blocking(job, _ChatChunks(self, job))

    async def achat_completion(self, body: Body, *, session_id: str | None = None) -> dict[str, Any]:
        """`chat_completion` on the event loop (generation in a worker thread; cancelling stops it)."""
        job = self.prepare_chat(body, session_id=session_id)
        return self._chat_body(job, await self._run_async(job))

    def astream_chat_completion(self, body: Body, *, session_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """`stream_chat_completion` as an async iterator. The request is validated now; generation
        errors are raised before the first chunk when nothing was generated yet."""
        job = self.prepare_chat(body, session_id=session_id)
        return self._stream_async(job, _ChatChunks(self, job))

    def completion(self, body: Body, *, session_id: str | None = None, token_ids: bool = False) -> dict[str, Any]:
        """A ``text_completion`` body for a plain prompt (no chat template); `token_ids` as in
        `chat_completion`."""
        job = self.prepare_completion(body, session_id=session_id)
        outcome = self._run_blocking(job)
        return _with_token_ids(self._completion_body(job, outcome), outcome, token_ids)

    def stream_completion(self, body: Body, *, session_id: str | None = None) -> Iterator[dict[str, Any]]:
        """``text_completion`` chunks of a streamed plain-prompt completion."""
        job = self.prepare_completion(body, session_id=session_id)
        return self._stream_blocking(job, _TextChunks(self, job))

    async def acompletion(self, body: Body, *, session_id: str | None = None) -> dict[str, Any]:
        job = self.prepare_completion(body, session_id=session_id)
        return self._completion_body(job, await self._run_async(job))

    def astream_completion(self, body: Body, *, session_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        job = self.prepare_completion(body, session_id=session_id)
        return self._stream_async(job, _TextChunks(self, job))

    def close(self) -> None:
        """Stop every running generation and the worker threads."""
        for slot in self.pool.slots:
            slot.runner.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- validation ------------------------------------------------------------------------------
    def prepare_chat(self, body: Body, *, session_id: str | None = None) -> _Job:
        """Validate a chat request (raises `APIError`) into a job."""
        request = _parse(ChatCompletionRequest, body)
        self._check_common(request)
        if request.top_logprobs and not request.logprobs:
            raise APIError(400, f"top_logprobs={request.top_logprobs} needs logprobs: true; send both",
                           param="top_logprobs", code="invalid_parameter")  # fmt: skip
        fmt = request_format(request.response_format)
        tools = self._tools(request)
        if tools is not None and (forced := forced_tools(request.tools or [], request.tool_choice)) is not None:
            if fmt is not None:
                raise APIError(400, "response_format cannot be combined with a forced tool_choice (the call's "
                               "format is the constraint); drop one", param="tool_choice")  # fmt: skip
            fmt = tool_call_format(forced, tools, self.model.runner.tokenizer,
                                   parallel=request.parallel_tool_calls is not False)  # fmt: skip
        template_kwargs = dict(request.chat_template_kwargs or {})
        if tools is not None:
            template_kwargs["tools"] = request.tools
        if template_kwargs and not self._renderer_takes_kwargs:
            what = "tools" if tools is not None else "chat_template_kwargs"
            raise APIError(400, f"{what} need a chat template, and the '{self.model.name}' adapter renders messages "
                           "without one (give the adapter a chat_template option)", param=what,
                           code="unsupported_parameter")  # fmt: skip
        messages = normalize_messages([_message(m) for m in request.messages], self.media)
        top = (request.top_logprobs or 0) if request.logprobs else 0
        config = self._config(request, request.resolved_max_tokens(), bool(request.logprobs), top)
        if fmt is not None:
            try:
                config = config.replace(response_format=fmt)
            except MMCoreError as exc:
                raise APIError(400, str(exc), param="response_format", code="invalid_response_format") from None
        return _Job(
            deadline=self._deadline(),
            kind="chat",
            id=new_id("chatcmpl"),
            messages=messages,
            config=config,
            key=fingerprint(messages, "chat"),
            session_id=session_id or request.session_id,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            tools=tools,
            template_kwargs=template_kwargs,
        )

    def prepare_completion(self, body: Body, *, session_id: str | None = None) -> _Job:
        """Validate a text-completion request (raises `APIError`) into a job."""
        request = _parse(CompletionRequest, body)
        self._check_common(request)
        if request.suffix:
            raise APIError(400, "suffix (insertion) is not supported; omit it", param="suffix",
                           code="unsupported_parameter")  # fmt: skip
        if request.best_of not in (None, 1):
            raise APIError(400, "best_of must be 1", param="best_of", code="unsupported_parameter")
        part, echo = _prompt_part(request.prompt, self.model)
        messages = [{"role": "user", "content": [part]}]
        config = self._config(request, request.max_tokens, request.logprobs is not None, request.logprobs or 0)
        return _Job(
            deadline=self._deadline(),
            kind="text",
            id=new_id("cmpl"),
            messages=messages,
            config=config,
            key=fingerprint(messages, "text"),
            session_id=session_id or request.session_id,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            echo=echo if request.echo else "",
        )

    def _deadline(self) -> float | None:
        return None if self.request_timeout is None else time.perf_counter() + self.request_timeout

    def _timeout_error(self) -> APIError:
        return APIError(504, f"the request took longer than the server's request timeout of {self.request_timeout:g} s "
                        "(mmcore serve --request-timeout); ask for fewer tokens or retry later",
                        type="timeout_error", code="request_timeout")  # fmt: skip

    def _check_common(self, request: ChatCompletionRequest | CompletionRequest) -> None:
        if request.model is not None and request.model not in (self.model_id, str(self.model.runner.program.path)):
            raise APIError(404, f"model {request.model!r} not found; this server serves {self.model_id!r}",
                           param="model", code="model_not_found")  # fmt: skip
        if request.n != 1:
            raise APIError(400, f"n={request.n}: this server generates one choice per request; send n=1",
                           param="n", code="unsupported_parameter")  # fmt: skip
        if request.logit_bias:
            raise APIError(400, "logit_bias is not supported; omit it", param="logit_bias",
                           code="unsupported_parameter")  # fmt: skip

    def _tools(self, request: ChatCompletionRequest) -> ToolParser | None:
        if not request.tools and request.tool_choice not in (None, "auto", "none"):
            raise APIError(400, f"tool_choice {request.tool_choice!r} needs tools", param="tool_choice")
        if not request.tools or request.tool_choice == "none":
            return None
        for number, tool in enumerate(request.tools):
            function = tool.get("function")
            if tool.get("type") != "function" or not isinstance(function, Mapping) or not function.get("name"):
                raise APIError(400, f"tools[{number}] must be {{'type': 'function', 'function': {{'name': ...}}}}",
                               param=f"tools.{number}")  # fmt: skip
        forced_tools(request.tools, request.tool_choice)  # a bad tool_choice is a 400 here
        return self.tool_parser

    def _config(
        self, request: ChatCompletionRequest | CompletionRequest, max_tokens: int | None, logprobs: bool, top: int
    ) -> GenerationConfig:
        """The model's generation defaults with the request's fields applied."""
        base = self.model.runner.generation_config
        changes: dict[str, Any] = {"echo": False, "logprobs": logprobs, "top_logprobs": top}
        for name in ("temperature", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty",
                     "repetition_penalty", "ignore_eos"):  # fmt: skip
            value = getattr(request, name)
            if value is not None:
                changes[name] = value
        if max_tokens is not None:
            changes["max_new_tokens"] = max_tokens
        if request.stop:
            stops = [request.stop] if isinstance(request.stop, str) else list(request.stop)
            if len(stops) > 4 or not all(stops):
                raise APIError(400, "stop takes up to 4 non-empty strings", param="stop")
            changes["stop"] = tuple(dict.fromkeys([*base.stop, *stops]))
        try:
            return base.replace(**changes)
        except MMCoreError as exc:
            raise APIError(400, str(exc), code="invalid_parameter") from None

    # -- running ---------------------------------------------------------------------------------
    def _run(self, job: _Job, slot: Slot, emit: Callable[[Piece], None] | None) -> _Outcome:
        """Generate on `slot` (blocking; the caller holds the slot)."""
        if job.deadline is not None and time.perf_counter() >= job.deadline:
            raise self._timeout_error()
        session = slot.session(job.kind, prefix_cache=self.prefix_cache)
        session.set_history(job.messages)
        first: list[float] = []
        deadline = job.deadline
        timed_out: list[bool] = []

        def on_piece(piece: Piece) -> None:
            now = time.perf_counter()
            if not first and piece.token is not None:
                first.append(now)
            if emit is not None:
                emit(piece)
            if deadline is not None and now >= deadline and not timed_out:
                timed_out.append(True)
                slot.runner.stop()  # ends the generation before its next decode step

        try:
            result = session.send(None, job.config, piece_callback=on_piece, template_kwargs=job.template_kwargs)
        except BaseException:
            slot.keys = []
            raise
        slot.keys = job.key + fingerprint([{"role": "assistant", "content": result.text}], job.kind)
        if timed_out and result.stop_reason == "stopped":
            self.metrics.timed_out()
            raise self._timeout_error()
        reused = int(result.stats.extra.get("reused_prompt_tokens", 0))
        prompt = reused + int(result.stats.extra.get("new_prompt_tokens", result.prompt_tokens))
        outcome = _Outcome(result, prompt, reused)
        ttft = first[0] - job.arrived if first else None
        per_token = None
        if first and len(result.tokens) > 1:
            per_token = (time.perf_counter() - first[0]) / (len(result.tokens) - 1)
        self.metrics.finished(prompt=prompt, cached=reused, generated=len(result.tokens), ttft_s=ttft,
                              per_token_s=per_token, speculative=result.stats.extra.get("speculative"))  # fmt: skip
        return outcome

    def _acquire(self, job: _Job) -> Slot:
        """A slot for `job` (a 504 when its deadline passes while it waits)."""
        slot = self.pool.acquire(job.key, job.session_id, timeout=job.remaining())
        if slot is None:
            self.metrics.timed_out()
            raise self._timeout_error()
        return slot

    async def _aacquire(self, job: _Job) -> Slot:
        remaining = job.remaining()
        try:
            return await asyncio.wait_for(self.pool.aacquire(job.key, job.session_id), remaining)
        except TimeoutError:
            self.metrics.timed_out()
            raise self._timeout_error() from None

    def _run_blocking(self, job: _Job) -> _Outcome:
        slot = self._acquire(job)
        try:
            return self._run(job, slot, None)
        except MMCoreError as exc:
            raise api_error_from(exc) from exc
        finally:
            self.pool.release(slot)

    async def _run_async(self, job: _Job) -> _Outcome:
        slot = await self._aacquire(job)
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self._executor, self._run, job, slot, None)
        try:
            return await asyncio.shield(task)
        except MMCoreError as exc:
            raise api_error_from(exc) from exc
        finally:
            if not task.done():  # cancelled (the client went away): stop within one decode step
                slot.runner.stop()
                with contextlib.suppress(BaseException):
                    await task
            self.pool.release(slot)

    def _stream_blocking(self, job: _Job, chunks: _Chunks) -> Iterator[dict[str, Any]]:
        slot = self._acquire(job)
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        outcome: list[_Outcome | BaseException] = []

        def work() -> None:
            try:
                outcome.append(self._run(job, slot, events.put))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                outcome.append(exc)
            finally:
                events.put(_DONE)

        worker = threading.Thread(target=work, name="mmcore-serve-stream", daemon=True)
        worker.start()

        def pieces() -> Iterator[Piece]:
            while (item := events.get()) is not _DONE:
                yield item

        def finish() -> _Outcome:
            worker.join()
            return _unwrap(outcome[0])

        def stop() -> None:
            if worker.is_alive():
                slot.runner.stop()
                worker.join()
            self.pool.release(slot)

        return _drive(chunks, pieces(), finish, stop)

    async def _stream_async(self, job: _Job, chunks: _Chunks) -> AsyncIterator[dict[str, Any]]:
        slot = await self._aacquire(job)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def emit(piece: Piece) -> None:
            loop.call_soon_threadsafe(events.put_nowait, piece)

        def work() -> _Outcome:
            try:
                return self._run(job, slot, emit)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, _DONE)

        task = loop.run_in_executor(self._executor, work)
        started = False
        try:
            while (item := await events.get()) is not _DONE:
                if not started:
                    started = True
                    for chunk in chunks.start():
                        yield chunk
                for chunk in chunks.piece(item):
                    yield chunk
            try:
                outcome = await task
            except MMCoreError as exc:
                raise api_error_from(exc) from exc
            if not started:
                for chunk in chunks.start():
                    yield chunk
            for chunk in chunks.finish(outcome):
                yield chunk
        finally:
            if not task.done():  # closed early or cancelled: the client went away
                slot.runner.stop()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(task)
            self.pool.release(slot)

    # -- bodies ----------------------------------------------------------------------------------
    def _chat_body(self, job: _Job, outcome: _Outcome) -> dict[str, Any]:
        result = outcome.result
        content: str | None = result.text
        calls: list[ParsedCall] = []
        if job.tools is not None:
            stream = ToolStream(job.tools, self.model.runner.tokenizer)
            content, calls = stream.finish(result.text, result.tokens)
        message = ResponseMessage(
            content=content if content or not calls else None,
            tool_calls=[ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments)) for c in calls]
            or None,
        )
        finish = "tool_calls" if calls else _FINISH[result.stop_reason]
        logprobs = self._logprobs(result.tokens, result.logprobs, result.top_logprobs)
        choice = Choice(message=message, finish_reason=finish, logprobs=logprobs)
        response = ChatCompletionResponse(
            id=job.id, created=job.created, model=self.model_id, choices=[choice], usage=outcome.usage
        )
        return _dump(response)

    def _completion_body(self, job: _Job, outcome: _Outcome) -> dict[str, Any]:
        result = outcome.result
        logprobs = None
        if result.logprobs is not None:
            logprobs = self._text_logprobs(result.tokens, result.logprobs, result.top_logprobs, len(job.echo))
        choice = CompletionChoice(
            text=job.echo + result.text, finish_reason=_FINISH[result.stop_reason], logprobs=logprobs
        )
        response = CompletionResponse(
            id=job.id, created=job.created, model=self.model_id, choices=[choice], usage=outcome.usage
        )
        return _dump(response)

    def _logprobs(
        self,
        tokens: Sequence[int],
        logprobs: Sequence[float] | None,
        tops: Sequence[Sequence[tuple[int, float]]] | None = None,
    ) -> ChoiceLogprobs | None:
        """A chat choice's ``logprobs`` (``content``: token, logprob, bytes, top_logprobs per token)."""
        if logprobs is None:
            return None
        items = []
        for i, (token, logprob) in enumerate(zip(tokens, logprobs, strict=False)):
            text = self._token_text(token)
            alternatives = []
            if tops is not None:
                for other, value in tops[i]:
                    other_text = self._token_text(other)
                    alternatives.append(TopLogprob(token=other_text, logprob=_finite(value),
                                                   bytes=list(other_text.encode("utf-8"))))  # fmt: skip
            items.append(TokenLogprob(token=text, logprob=_finite(logprob), bytes=list(text.encode("utf-8")),
                                      top_logprobs=alternatives))  # fmt: skip
        return ChoiceLogprobs(content=items)

    def _text_logprobs(
        self,
        tokens: Sequence[int],
        logprobs: Sequence[float],
        tops: Sequence[Sequence[tuple[int, float]]] | None,
        offset: int,
    ) -> dict[str, Any]:
        """A text completion choice's ``logprobs`` (the legacy shape: parallel lists)."""
        texts = [self._token_text(t) for t in tokens]
        top = None
        if tops is not None:
            top = [{self._token_text(other): _finite(value) for other, value in alternatives} for alternatives in tops]
        return {"tokens": texts, "token_logprobs": [_finite(v) for v in logprobs], "top_logprobs": top,
                "text_offset": _offsets(texts, offset)}  # fmt: skip

    def _token_text(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            text = self.model.runner.tokenizer.decode([token], skip_special_tokens=False)
            if len(self._texts) < _MAX_TOKEN_TEXTS:
                self._texts[token] = text
        return text


class _Chunks:
    """Turns a generation's events into stream chunks."""

    def start(self) -> list[dict[str, Any]]:
        return []

    def piece(self, piece: Piece) -> list[dict[str, Any]]:
        raise NotImplementedError

    def finish(self, outcome: _Outcome) -> list[dict[str, Any]]:
        raise NotImplementedError


class _ChatChunks(_Chunks):
    def __init__(self, service: ChatService, job: _Job) -> None:
        self.service = service
        self.job = job
        self.tools = ToolStream(job.tools, service.model.runner.tokenizer) if job.tools is not None else None

    def _chunk(
        self, delta: DeltaMessage, finish: str | None = None, logprobs: ChoiceLogprobs | None = None
    ) -> dict[str, Any]:
        choice = ChunkChoice(delta=delta, finish_reason=finish, logprobs=logprobs)  # type: ignore[arg-type]
        chunk = ChatCompletionChunk(
            id=self.job.id, created=self.job.created, model=self.service.model_id, choices=[choice]
        )
        body = _dump(chunk)
        body["choices"][0]["delta"] = _dump(delta, exclude_none=True)
        return body

    def start(self) -> list[dict[str, Any]]:
        return [self._chunk(DeltaMessage(role="assistant", content=""))]

    def piece(self, piece: Piece) -> list[dict[str, Any]]:
        text = self.tools.push(piece.text, piece.token) if self.tools is not None else piece.text
        logprobs = None
        if piece.logprob is not None and piece.token is not None:
            tops = [piece.top_logprobs] if piece.top_logprobs is not None else None
            logprobs = self.service._logprobs([piece.token], [piece.logprob], tops)
        if not text and logprobs is None:
            return []
        return [self._chunk(DeltaMessage(content=text), logprobs=logprobs)]

    def finish(self, outcome: _Outcome) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        calls: list[ParsedCall] = []
        if self.tools is not None:
            rest, calls = self.tools.finish(outcome.result.text, outcome.result.tokens)
            if rest:
                out.append(self._chunk(DeltaMessage(content=rest)))
        if calls:
            deltas = [ToolCall(index=i, id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
                      for i, c in enumerate(calls)]  # fmt: skip
            out.append(self._chunk(DeltaMessage(tool_calls=deltas)))
        out.append(self._chunk(DeltaMessage(), "tool_calls" if calls else _FINISH[outcome.result.stop_reason]))
        if self.job.include_usage:
            usage = ChatCompletionChunk(id=self.job.id, created=self.job.created, model=self.service.model_id,
                                        choices=[], usage=outcome.usage)  # fmt: skip
            out.append(_dump(usage))
        return out


class _TextChunks(_Chunks):
    def __init__(self, service: ChatService, job: _Job) -> None:
        self.service = service
        self.job = job

        self.offset = len(job.echo)

    def _chunk(self, text: str, finish: str | None = None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        choice = CompletionChoice(text=text, finish_reason=finish, logprobs=logprobs)  # type: ignore[arg-type]
        return _dump(
            CompletionChunk(id=self.job.id, created=self.job.created, model=self.service.model_id, choices=[choice])
        )

    def start(self) -> list[dict[str, Any]]:
        return [self._chunk(self.job.echo)] if self.job.echo else []

    def piece(self, piece: Piece) -> list[dict[str, Any]]:
        if piece.logprob is not None and piece.token is not None:
            tops = [piece.top_logprobs] if piece.top_logprobs is not None else None
            logprobs = self.service._text_logprobs([piece.token], [piece.logprob], tops, self.offset)
            self.offset += len(logprobs["tokens"][0])
            return [self._chunk(piece.text, logprobs=logprobs)]
        return [self._chunk(piece.text)] if piece.text else []

    def finish(self, outcome: _Outcome) -> list[dict[str, Any]]:
        out = [self._chunk("", _FINISH[outcome.result.stop_reason])]
        if self.job.include_usage:
            chunk = CompletionChunk(id=self.job.id, created=self.job.created, model=self.service.model_id, choices=[],
                                    usage=outcome.usage)  # fmt: skip
            out.append(_dump(chunk))
        return out


def _drive(
    chunks: _Chunks, pieces: Iterator[Piece], finish: Callable[[], _Outcome], stop: Callable[[], None]
) -> Iterator[dict[str, Any]]:
    """The chunks of a blocking stream; the first is held until a piece (or the end) arrives, so a
    failing request raises before any chunk."""
    try:
        started = False
        for piece in pieces:
            if not started:
                started = True
                yield from chunks.start()
            yield from chunks.piece(piece)
        try:
            outcome = finish()
        except MMCoreError as exc:
            raise api_error_from(exc) from exc
        if not started:
            yield from chunks.start()
        yield from chunks.finish(outcome)
    finally:
        stop()


def _with_token_ids(body: dict[str, Any], outcome: _Outcome, token_ids: bool) -> dict[str, Any]:
    """mmcore's extension field: the generated token ids beside the OpenAI body."""
    if token_ids:
        body["mmcore"] = {"token_ids": list(outcome.result.tokens)}
    return body


def _unwrap(value: _Outcome | BaseException) -> _Outcome:
    if isinstance(value, BaseException):
        raise value
    return value


def _parse(model: type[Any], body: Body) -> Any:
    if isinstance(body, model):
        return body
    if isinstance(body, BaseModel):
        body = body.model_dump()
    if not isinstance(body, Mapping):
        raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _message(message: ChatMessage) -> dict[str, Any]:
    """A protocol message as mmcore's chat message (tool-call arguments parsed for the template)."""
    out: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
    out["content"] = message.content if message.content is not None else ""
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            arguments: Any = call.function.arguments or "{}"
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
            calls.append({"id": call.id, "type": "function",
                          "function": {"name": call.function.name, "arguments": arguments}})  # fmt: skip
        out["tool_calls"] = calls
    return out


def _prompt_part(prompt: str | list[str] | list[int] | list[list[int]], model: ChatModel) -> tuple[dict[str, Any], str]:
    """The content part of a completion prompt (text or token ids) and its text for `echo`."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise APIError(400, "prompt is empty; send some text", param="prompt")
        return {"type": "text", "text": prompt}, prompt
    if prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = [int(t) for t in prompt]  # type: ignore[arg-type]
        return {"type": "tokens", "tokens": ids}, model.runner.tokenizer.decode(ids)
    raise APIError(400, "prompt must be one string or one list of token ids (batches of prompts are not supported)",
                   param="prompt")  # fmt: skip


def _finite(logprob: float) -> float:
    """A logprob JSON can carry: -inf (an id the sampler could not draw) as -9999.0, as vLLM sends it."""
    return logprob if logprob > _NO_CHANCE else _NO_CHANCE


def _offsets(tokens: Sequence[str], start: int) -> list[int]:
    out, pos = [], start
    for token in tokens:
        out.append(pos)
        pos += len(token)
    return out


def _dump(model: BaseModel, *, exclude_none: bool = False) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=exclude_none)


def _takes_template_kwargs(renderer: Any) -> bool:
    try:
        return "template_kwargs" in inspect.signature(renderer.render).parameters
    except (TypeError, ValueError):
        return False
