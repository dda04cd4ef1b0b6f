"""Running a batch on Ray: a Ray Data pipeline of the requests left to do, `map_batches` over an
actor pool of workers (each loads the model once), answers streamed back to the driver, whose one
writer appends them. Needs the `mmcore[ray]` extra."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from mmcore.batch.jsonl import InputIndex
from mmcore.batch.worker import Answer, BatchWorker, ModelOptions, prefix_key
from mmcore.errors import MMCoreError

__all__ = ["RayEngine", "RayWorker", "RayUnavailableError"]

logger = logging.getLogger(__name__)

_BATCH_SIZE = 4  # requests per actor call: small, so answers stream back and a stop loses little


class RayUnavailableError(MMCoreError):
    """Ray is not installed, or the cluster cannot be reached."""


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayUnavailableError("--ray needs Ray: pip install 'mmcore[ray]' (or pip install 'ray[data]')") from exc


class RayWorker:
    """The actor class of the pool: one `BatchWorker` per actor, a batch of lines in, answers out."""

    def __init__(self, options: ModelOptions, threads: int) -> None:
        self.worker = BatchWorker(options, f"ray-{os.getpid()}", threads=threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for custom_id, raw, number in zip(batch["custom_id"], batch["line"], batch["line_number"], strict=True):
            answer = self.worker.answer_raw(str(custom_id), str(raw).encode("utf-8"), int(number))
            for name, value in zip(_COLUMNS, _to_row(answer), strict=True):
                out[name].append(value)
        return out


_COLUMNS = ("custom_id", "answer_line", "worker", "seconds", "prompt_tokens", "completion_tokens")


def _to_row(answer: Answer) -> tuple[Any, ...]:
    return (answer.custom_id, json.dumps(answer.line), answer.worker, answer.seconds, answer.prompt_tokens,
            answer.completion_tokens)  # fmt: skip


def _from_row(row: dict[str, Any]) -> Answer:
    return Answer(str(row["custom_id"]), json.loads(row["answer_line"]), str(row["worker"]), float(row["seconds"]),
                  int(row["prompt_tokens"]), int(row["completion_tokens"]))  # fmt: skip


class RayEngine:
    """`workers` actors on Ray. `address=None` starts a local Ray instance (or uses the one this
    process already runs); `"auto"` or an address joins a running cluster."""

    def __init__(self, options: ModelOptions, workers: int, *, address: str | None = None,
                 num_cpus_per_worker: float = 1.0) -> None:  # fmt: skip
        self.options = options
        self.workers = workers
        self.address = address
        self.num_cpus_per_worker = num_cpus_per_worker

    def answers(self, index: InputIndex, todo: Sequence[str], stop: threading.Event) -> Iterator[Answer]:
        ray = _ray()
        started = self._connect(ray)
        self._quiet(ray)
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if self.workers * self.num_cpus_per_worker > cpus:  # an autoscaling cluster may still grow
            logger.warning("%d actors of %g CPU each need more CPUs than the Ray cluster has now (%g); "
                           "the pool waits for them", self.workers, self.num_cpus_per_worker, cpus)  # fmt: skip
        try:
            rows: list[dict[str, Any]] = []
            for custom_id in todo:
                request = index.read(custom_id)
                rows.append({"custom_id": custom_id, "line": index.raw_line(custom_id).decode("utf-8"),
                             "line_number": request.line_number, "key": prefix_key(request.body) or ""})  # fmt: skip
            rows.sort(key=lambda r: str(r["key"]))  # one prefix's requests share batches, hence an actor's cache
            # One block per actor call, so the pool shares the work (one block would go to one actor).
            blocks = max(1, -(-len(rows) // _BATCH_SIZE))
            with warnings.catch_warnings():
                # Ray 2.60 takes `max_restarts` only through the deprecated `ray_remote_args`.
                warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", module=__name__)
                dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
                    RayWorker,
                    fn_constructor_args=(self.options, max(1, int(self.num_cpus_per_worker))),
                    compute=ray.data.ActorPoolStrategy(size=self.workers),
                    batch_size=_BATCH_SIZE,
                    num_cpus=self.num_cpus_per_worker,
                    batch_format="numpy",
                    # A dead actor stops the job, as a dead local worker does (rerun to go on). Ray
                    # Data's default, restarting it forever, makes Ray warn on stderr that a restart
                    # may fail (its constructor arguments live in the object store; ray-project/ray#53727).
                    max_restarts=0,
                )
            for row in dataset.iter_rows():
                yield _from_row(row)
                if stop.is_set():
                    return
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Connect to Ray; True when this call started (and so must stop) it. The job's SIGINT and
        SIGTERM handlers (a clean stop) survive: `ray.init` replaces SIGTERM's with an exit."""
        if ray.is_initialized():
            return False
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        # A new local instance gets token authentication, Ray's default, and Ray announces it on stderr.
        _drop_notice("ray._private.authentication.authentication_token_setup", "Token authentication is enabled")
        try:
            # "local" always starts a new instance (never one found through RAY_ADDRESS or `ray start`).
            ray.init(address=self.address or "local", include_dashboard=False if self.address is None else None,
                     logging_level=logging.WARNING, configure_logging=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = "a local Ray instance" if self.address is None else f"the Ray cluster at {self.address!r}"
            raise RayUnavailableError(f"cannot start or reach {where}: {exc}") from exc
        finally:
            if threading.current_thread() is threading.main_thread():
                for signum, handler in handlers.items():
                    if handler is not None:
                        signal.signal(signum, handler)
        return True

    @staticmethod
    def _quiet(ray: Any) -> None:
        """Our progress bar replaces Ray Data's; its INFO logs stay in Ray's log files."""
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        _drop_notice("ray.data._internal.progress", "Progress bars disabled")


def _drop_notice(logger_name: str, prefix: str) -> None:
    """Drop the records of one Ray logger that start with `prefix` (a notice about a choice this
    engine made); every other record of that logger passes."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, _NoticeFilter) and f.prefix == prefix for f in target.filters):
        target.addFilter(_NoticeFilter(prefix))


class _NoticeFilter(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)
