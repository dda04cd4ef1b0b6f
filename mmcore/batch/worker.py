"""One loaded model answering batch requests: what every engine (in-process, process pool, Ray
actor) runs per request."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.batch.jsonl import BatchRequest, error_line, response_line
from mmcore.batch.service import open_service, respond
from mmcore.chat_model import AUTO, ChatModel, build_chat_model

__all__ = ["Answer", "BatchWorker", "ModelOptions", "derive_seed", "limit_threads", "prefix_key"]


@dataclass(frozen=True)
class ModelOptions:
    """How every worker opens the model (plain data, so it crosses process and Ray boundaries)."""

    program: str | None
    config: str | None = None
    adapter: str | None = None
    tokenizer: str | None = None
    data_path: str | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    media_dir: str = "."
    served_model_id: str | None = None

    @property
    def model_id(self) -> str:
        """The id request bodies may name as `model` (as `mmcore serve --model-id`; default: the
        program's file stem)."""
        return self.served_model_id or (Path(self.program).stem if self.program else "mmcore")

    def open(self) -> ChatModel:
        """The model, loaded (its program memory-mapped by ExecuTorch)."""
        from mmcore.assemble import load_config, with_overrides
        from mmcore.plugins import get_plugin_manager

        pm = get_plugin_manager()
        if self.config:
            config = load_config(self.config, plugin_manager=pm)
            config = with_overrides(config, program=self.program, plugin_manager=pm)
        else:
            config = load_config({"program": self.program}, plugin_manager=pm)
        config = with_overrides(config, tokenizer=self.tokenizer, modalities=self.settings, plugin_manager=pm)
        changes: dict[str, Any] = {"adapter": self.adapter or config.adapter or AUTO}
        if self.data_path:
            changes["data_path"] = Path(self.data_path)
        model = build_chat_model(dataclasses.replace(config, **changes), plugin_manager=pm)
        model.runner.load()
        return model


@dataclass
class Answer:
    """A finished request: its output line and what it cost."""

    custom_id: str
    line: dict[str, Any]
    worker: str
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def is_error(self) -> bool:
        return self.line["error"] is not None


def derive_seed(custom_id: str) -> int:
    """The sampling seed of a request that names none: fixed by its custom_id, so its sampled
    output is the same whichever worker answers it and however often it is rerun."""
    return int.from_bytes(hashlib.blake2b(custom_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def prefix_key(body: Any) -> str | None:
    """What requests of one conversation share: everything but the last message (or, for a
    one-message conversation, its media). Requests with the same key go to the same worker."""
    if not isinstance(body, Mapping):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    if len(messages) > 1:
        shared: Any = messages[:-1]
    else:
        content = messages[0].get("content") if isinstance(messages[0], Mapping) else None
        shared = [p for p in content if isinstance(p, Mapping) and p.get("type") != "text"] if isinstance(
            content, list) else None  # fmt: skip
        if not shared:
            return None
    return hashlib.blake2b(json.dumps(shared, sort_keys=True).encode(), digest_size=12).hexdigest()


def limit_threads(threads: int) -> None:
    """Run this process's kernels on at most `threads` threads: N workers on C cores get C // N
    each, not C each (which would oversubscribe the cores N times)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    runtime = sys.modules.get("executorch.extension.pybindings._C")  # loaded with the model
    if runtime is not None and runtime._threadpool_get_thread_count() > threads:
        from mmcore.kernels import quiet_stderr

        with quiet_stderr():  # the runtime logs the reset on the stderr file descriptor
            runtime._unsafe_reset_threadpool(threads)  # safe here: nothing runs on the pool yet


class BatchWorker:
    """Loads the model once and answers requests one at a time; a request that fails gets an
    error line and the worker goes on."""

    def __init__(self, options: ModelOptions, name: str = "worker-0", *, threads: int | None = None) -> None:
        self.options = options
        self.name = name
        if threads is not None:  # the native path's kernel pool is sized as it is created, so before loading
            from mmcore.kernels import limit_threadpool

            limit_threadpool(threads)
        self.model = options.open()
        if threads is not None:
            limit_threads(threads)
        self.service = open_service(self.model, model_id=options.model_id, media_dir=options.media_dir)

    def answer(self, request: BatchRequest) -> Answer:
        start = time.perf_counter()
        line = self._line(request)
        usage = (line["response"] or {}).get("body", {}).get("usage") or {}
        return Answer(request.custom_id, line, self.name, time.perf_counter() - start,
                      int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))  # fmt: skip

    def answer_raw(self, custom_id: str, raw: bytes, line_number: int = 0) -> Answer:
        """`answer` for an input line as bytes (what crosses a process boundary)."""
        return self.answer(BatchRequest(custom_id, line_number, json.loads(raw)))

    def _line(self, request: BatchRequest) -> dict[str, Any]:
        problem = request.problem()
        if problem is not None:
            return error_line(request.custom_id, "invalid_request", f"line {request.line_number}: {problem}")
        body = dict(request.body)
        if body.get("seed") is None:
            body["seed"] = derive_seed(request.custom_id)
        reply = respond(self.service, request.url, body)  # a failure is an error line; the job goes on
        return response_line(request.custom_id, reply.status_code, reply.body)
