"""Running a batch on this machine: in this process (one worker) or a pool of worker processes,
each with its own runner, requests of one conversation prefix kept on one worker."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import types
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from mmcore.batch.jsonl import InputIndex, error_line
from mmcore.batch.worker import Answer, BatchWorker, ModelOptions, prefix_key
from mmcore.errors import MMCoreError

__all__ = ["InlineEngine", "ProcessPoolEngine", "WorkerStartError", "assign_workers"]

logger = logging.getLogger(__name__)

_DEPTH = 2  # requests queued per worker: one in progress, one ready to start


class WorkerStartError(MMCoreError):
    """A worker could not load the model."""


class InlineEngine:
    """One worker in this process."""

    workers = 1

    def __init__(self, options: ModelOptions) -> None:
        self.options = options

    def answers(self, index: InputIndex, todo: Sequence[str], stop: threading.Event) -> Iterator[Answer]:
        worker = BatchWorker(self.options, "worker-0")
        for custom_id in todo:
            if stop.is_set():
                return
            yield worker.answer(index.read(custom_id))


def assign_workers(keys: Sequence[str | None], n_workers: int) -> list[deque[int]]:
    """Request positions per worker: requests sharing a key stay together (largest groups first,
    each to the least-loaded worker), keyless requests fill the gaps; input order kept per worker."""
    groups: dict[str, list[int]] = {}
    loose: list[int] = []
    for position, key in enumerate(keys):
        if key is None:
            loose.append(position)
        else:
            groups.setdefault(key, []).append(position)
    plans: list[list[int]] = [[] for _ in range(n_workers)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(plans, key=len).extend(group)
    for position in loose:
        min(plans, key=len).append(position)
    return [deque(sorted(plan)) for plan in plans]


def _preload() -> list[str]:
    """What the forkserver imports before forking workers, so its pages are shared copy-on-write
    rather than imported again by each worker: mmcore's batch worker and the installed plugins
    (a plugin that fails to import is skipped there and reported by the worker's plugin manager)."""
    from importlib.metadata import entry_points

    from mmcore.plugins import ENTRY_POINT_GROUP

    return ["mmcore.batch.worker", *dict.fromkeys(ep.module for ep in entry_points(group=ENTRY_POINT_GROUP))]


@contextlib.contextmanager
def _without_main_module() -> Iterator[None]:
    """Start processes that do not re-import this process's `__main__`.

    multiprocessing makes every child import the parent's main script or module again (as
    `__mp_main__`), whatever the child runs. A worker needs only `mmcore.batch.local`; the job's
    main may be a script that imports torch (a benchmark, a test runner), which cost each worker
    ~150 MiB of private memory and its import time. While the workers are started, `__main__` is a
    bare module, so the children are told to import nothing."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _exit_with_job() -> None:
    """End this process as soon as the job's process is gone, even killed by SIGKILL (its end of
    the sentinel pipe closes), whatever this process is doing."""
    job = multiprocessing.parent_process()
    if job is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([job.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="mmcore-batch-watch", daemon=True).start()


def _worker_main(options: ModelOptions, name: str, threads: int, tasks: Any, results: Any, stop: Any) -> None:
    """A pool process: load the model, then answer tasks until the `None` sentinel."""
    _exit_with_job()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole group; the job decides
        signal.signal(signum, signal.SIG_IGN)
    try:
        worker = BatchWorker(options, name, threads=threads)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the job
        results.put(("failed", name, f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", name, None))
    while True:
        task = tasks.get()
        if task is None:
            return
        custom_id, raw, line_number = task
        if stop.is_set():
            results.put(("skipped", name, custom_id))
            continue
        results.put(("answer", name, worker.answer_raw(custom_id, raw, line_number)))


class ProcessPoolEngine:
    """N worker processes (spawned, each loading the model once; the program's file pages are
    shared through the OS page cache). Each worker has its own queue, fed from its share of the
    requests; an idle worker takes requests from the longest remaining share."""

    def __init__(self, options: ModelOptions, workers: int) -> None:
        if workers < 2:
            raise ValueError("a process pool needs at least 2 workers; use InlineEngine for one")
        self.options = options
        self.workers = workers

    def answers(self, index: InputIndex, todo: Sequence[str], stop: threading.Event) -> Iterator[Answer]:
        keys = [prefix_key(index.read(cid).body) for cid in todo]
        shares = assign_workers(keys, self.workers)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_preload())  # workers fork from a process that imported mmcore and the plugins
        results = ctx.Queue()
        cancel = ctx.Event()
        names = [f"worker-{i}" for i in range(self.workers)]
        queues = [ctx.Queue() for _ in names]
        threads = max(1, (os.cpu_count() or 1) // self.workers)  # the cores split among the workers
        procs = [ctx.Process(target=_worker_main, args=(self.options, name, threads, q, results, cancel), name=name,
                             daemon=True) for name, q in zip(names, queues, strict=True)]  # fmt: skip
        with _without_main_module():
            for proc in procs:
                proc.start()
        inflight: list[deque[int]] = [deque() for _ in names]
        ready: set[int] = set()
        try:
            while any(shares) or any(inflight):
                if stop.is_set():
                    cancel.set()
                    shares = [deque() for _ in names]
                    if not any(inflight):
                        break
                for w in ready:
                    while len(inflight[w]) < _DEPTH:
                        position = self._next(shares, w)
                        if position is None:
                            break
                        custom_id = todo[position]
                        entry = index.read(custom_id)
                        queues[w].put((custom_id, index.raw_line(custom_id), entry.line_number))
                        inflight[w].append(position)
                try:
                    kind, name, payload = results.get(timeout=0.5)
                except queue.Empty:
                    yield from self._check_deaths(procs, inflight, ready, todo, stopping=stop.is_set())
                    continue
                w = names.index(name)
                if kind == "failed":
                    raise WorkerStartError(f"{name} could not load the model: {payload}")
                if kind == "ready":
                    ready.add(w)
                    continue
                custom_id = payload.custom_id if kind == "answer" else payload
                finished = inflight[w].popleft()  # a worker answers its queue in order
                assert todo[finished] == custom_id, (todo[finished], custom_id)
                if kind == "answer":
                    yield payload
        finally:
            cancel.set()
            for q in queues:
                q.put(None)
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()

    @staticmethod
    def _next(shares: list[deque[int]], w: int) -> int | None:
        if shares[w]:
            return shares[w].popleft()
        longest = max(shares, key=len)
        return longest.pop() if longest else None

    def _check_deaths(self, procs: list[Any], inflight: list[deque[int]], ready: set[int],
                      todo: Sequence[str], *, stopping: bool) -> Iterator[Answer]:  # fmt: skip
        """A worker that died mid-job: its current request gets an error line (unless the job is
        stopping anyway: then its requests stay unanswered) and the job stops."""
        for w, proc in enumerate(procs):
            if proc.is_alive():
                continue
            ready.discard(w)
            if stopping:
                inflight[w].clear()
                continue
            if inflight[w]:
                custom_id = todo[inflight[w].popleft()]
                message = f"the worker process died (exit code {proc.exitcode}) while answering this request"
                yield Answer(custom_id, error_line(custom_id, "worker_died", message, 500), proc.name, 0.0)
            raise WorkerStartError(
                f"{proc.name} exited with code {proc.exitcode}; the finished requests are kept, "
                "rerun the same command to go on"
            )
