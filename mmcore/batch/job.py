"""A batch job: check the input, skip what the output already holds, run the rest on an engine,
append each answer as it comes, stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mmcore.batch.jsonl import InputIndex, ResultWriter, index_input, read_finished
from mmcore.batch.progress import JobStats, Progress
from mmcore.batch.worker import Answer

__all__ = ["Engine", "JobResult", "run_batch", "stop_on_signals"]


class Engine(Protocol):
    """Answers requests; stops taking new ones once `stop` is set (answers in progress still come)."""

    workers: int

    def answers(self, index: InputIndex, todo: Sequence[str], stop: threading.Event) -> Iterator[Answer]: ...


@dataclass
class JobResult:
    """How a job ended: its stats, and the signal that stopped it early (None if it finished)."""

    stats: JobStats
    stopped_by: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.stopped_by is None and self.stats.remaining == 0


@contextmanager
def stop_on_signals(stop: threading.Event, received: list[int]) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` (the job finishes the requests in progress); a second one
    interrupts at once (KeyboardInterrupt). Handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_batch(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    engine: Engine,
    *,
    quiet: bool = True,
    stop: threading.Event | None = None,
) -> JobResult:
    """Run every request of `input_path` not yet answered in `output_path`, appending answers
    (a progress bar on stderr unless `quiet`).

    Raises `BatchInputError` (bad or duplicate custom_ids) or `BatchOutputError` (an output that
    is not this input's) before any work starts.
    """
    index = index_input(input_path)
    finished = read_finished(output_path, index)
    todo = [cid for cid in index.custom_ids if cid not in finished]
    stats = JobStats(total=len(index), skipped=len(finished))
    progress = Progress(stats, quiet=quiet)
    stop = stop if stop is not None else threading.Event()
    received: list[int] = []
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with ResultWriter(output_path) as writer, stop_on_signals(stop, received):
        try:
            if todo:
                for answer in engine.answers(index, todo, stop):
                    writer.write(answer.line)
                    stats.record(error=answer.is_error, prompt_tokens=answer.prompt_tokens,
                                 completion_tokens=answer.completion_tokens, worker=answer.worker,
                                 seconds=answer.seconds)  # fmt: skip
                    progress.update()
        finally:
            stats.ended = stats.wall_seconds + stats.started
            progress.close()
    return JobResult(stats, received[0] if received else None)
