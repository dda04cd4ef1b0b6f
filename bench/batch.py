"""`mmcore batch` throughput: requests per second for 1 and 2 local workers and on a local Ray
instance, against a loop of `runner.generate` in one process; Ray's overhead per request; memory
per worker.

    python3 bench/batch.py                          # tiny program, 128 requests, 3 interleaved rounds
    python3 bench/batch.py --requests 96 --repeats 5 --max-tokens 64
    python3 bench/batch.py --no-ray                 # local engines only
    python3 bench/batch.py --memory-model 60M       # memory per worker on the ~25 M-parameter program

Each round runs every engine once over the same requests (greedy chat completions of different
prompts), in turn, so the machine's load hits them alike; medians over rounds are reported.
Rates are *steady-state*: the last three quarters of the answers over the time they took (an
engine's start-up -- spawning workers, Ray actors, loading the model -- is reported apart, and Ray
hands answers back in bursts of a block).
The per-request overhead of an engine is its steady wall time per request (times its workers) minus
the mean time its workers spent answering one request. CPU per request counts every process the
engine runs on (the job process, its workers; for Ray also the raylet, GCS and Ray's helpers), over
the same steady-state window: on a machine shared with other work it is the stabler measure of an
engine's cost, since wall times there depend on how much CPU the others leave.

Memory: while a 2-worker job runs (local pool, then Ray), each worker's /proc/PID/smaps_rollup is
sampled; reported are the peak RSS, PSS (shared pages divided among the processes mapping them),
USS (pages only this worker has) and the program file's pages (file-backed, shared through the page
cache: ExecuTorch maps the program rather than copying it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmcore.adapters import PromptRenderer
from mmcore.batch import InlineEngine, ModelOptions, ProcessPoolEngine, index_input
from mmcore.batch.job import Engine
from mmcore.batch.worker import Answer
from mmcore.testing import DecoderSpec, ProgramSpec, build_program, build_tokenizer, tokenizer_vocab_size

WORDS = "the cat dog sees likes a red ball my friend walks past river our team builds small house".split()
MODELS: dict[str, Callable[[int], DecoderSpec]] = {
    "tiny": lambda vocab: dataclasses.replace(DecoderSpec.tiny(vocab), max_context_len=256),
    "60M": lambda vocab: dataclasses.replace(DecoderSpec.big(), vocab_size=vocab),
}


@dataclasses.dataclass
class Run:
    """One engine over the requests: start-up, steady rate, what its workers spent per request."""

    startup_s: float
    rate: float
    worker_s: float
    wall_s: float
    cpu_s: float  # CPU time (all threads of the processes answering) per request, steady state


def prompts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 5)) for i in range(n)]


def write_requests(folder: Path, texts: list[str], max_tokens: int) -> Path:
    path = folder / "requests.jsonl"
    with path.open("w") as f:
        for i, text in enumerate(texts):
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 0}
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
            f.write("\n")
    return path


def time_engine(engine: Engine, requests: Path, find: Callable[[], list[int]]) -> Run:
    """Run `engine` over `requests`, sampling the processes `find()` names (its workers)."""
    index = index_input(requests)
    stop = threading.Event()
    stamps: list[float] = []
    answers: list[Answer] = []
    with Sampler(find) as sampler:
        start = time.perf_counter()
        for answer in engine.answers(index, index.custom_ids, stop):
            assert answer.line["error"] is None, answer.line["error"]
            stamps.append(time.perf_counter())
            answers.append(answer)
    n, k = len(stamps), len(stamps) // 4  # steady state: the last three quarters (answers can come in bursts)
    rate = (n - 1 - k) / (stamps[-1] - stamps[k])
    cpu = (sampler.cpu_at(stamps[-1]) - sampler.cpu_at(stamps[k])) / (n - 1 - k)
    return Run(stamps[0] - start, rate, statistics.mean(a.seconds for a in answers), stamps[-1] - start, cpu)


def time_loop(options: ModelOptions, texts: list[str], max_tokens: int) -> Run:
    """The baseline: one model in this process, `runner.generate` per prompt (chat template applied
    as the batch engines do, so the prompts are the same tokens)."""
    start = time.perf_counter()
    model = options.open()
    config = model.runner.generation_config.replace(max_new_tokens=max_tokens, temperature=0.0, echo=False)
    if isinstance(model.renderer, PromptRenderer):  # the rendered prompt carries its own BOS (as ChatModel.chat)
        config = config.replace(num_bos=0, num_eos=0)
    stamps, spent, cpu = [], [], []
    for text in texts:
        t = time.perf_counter()
        model.runner.reset()
        model.runner.generate(model.inputs([{"role": "user", "content": text}]), config)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
        spent.append(stamps[-1] - t)
    n, k = len(texts), len(texts) // 4
    rate = (n - 1 - k) / (stamps[-1] - stamps[k])
    return Run(0.0, rate, statistics.mean(spent), stamps[-1] - start, (cpu[-1] - cpu[k]) / (n - 1 - k))


# -- memory ----------------------------------------------------------------------------------------
def _rollup(pid: int, program: Path) -> dict[str, int] | None:
    """RSS, PSS, USS and the program file's resident pages of `pid`, in KiB."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        maps = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    fields = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    program_kib, inside = 0, False
    for line in maps.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(str(program))
        elif inside and line.startswith("Rss:"):
            program_kib = max(program_kib, int(line.split()[1]))  # the same pages, mapped more than once
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": uss, "program": program_kib}


def _pool_workers() -> list[int]:
    """The pool's workers: grandchildren of this process (children of the forkserver)."""

    def children(pid: int) -> list[int]:
        out: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    return [grandchild for child in children(os.getpid()) for grandchild in children(child)]


def _ray_processes(*markers: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if any(marker in (proc / "cmdline").read_bytes() for marker in markers):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def _ray_workers() -> list[int]:
    """The actors of the pool."""
    return _ray_processes(b"RayWorker")


def _job_and_pool() -> list[int]:
    """What a local pool job costs: this process (the job: dispatch, the writer) and its workers."""
    return [os.getpid(), *_pool_workers()]


def _job_and_ray() -> list[int]:
    """What a Ray job costs: this process (the driver), the actors and Ray's own processes."""
    return [os.getpid(), *_ray_processes(b"RayWorker", b"raylet", b"gcs_server", b"ray/_private", b"ray/dashboard")]


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class Sampler:
    """Every 0.1 s while a job runs: the CPU time of the processes `find()` returns (summed; a
    process that exits keeps its last value) and each one's peak memory (`program` pages resident)."""

    def __init__(self, find: Callable[[], list[int]], program: Path | None = None) -> None:
        self.find = find
        self.program = program
        self.cpu: dict[int, float] = {}
        self.series: list[tuple[float, float]] = []
        self.peaks: dict[int, dict[str, int]] = {}

    def __enter__(self) -> Sampler:
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait()
        return self

    def _sample(self) -> None:
        for pid in self.find():
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                self.cpu[pid] = seconds
            sample = _rollup(pid, self.program) if self.program is not None else None
            if sample is not None and sample["program"] > 0:  # a worker with the model loaded
                peak = self.peaks.setdefault(pid, sample)
                for key, value in sample.items():
                    peak[key] = max(peak[key], value)
        own = time.thread_time() if os.getpid() in self.cpu else 0.0  # this sampling thread is not the engine's
        self.series.append((time.perf_counter(), sum(self.cpu.values()) - own))

    def _run(self) -> None:
        self._sample()
        self._started.set()
        while not self._stop.wait(0.1):
            self._sample()
        self._sample()

    def cpu_at(self, when: float) -> float:
        """The summed CPU seconds at `when` (linear between samples)."""
        before = max((p for p in self.series if p[0] <= when), default=self.series[0])
        after = min((p for p in self.series if p[0] >= when), default=self.series[-1])
        if after[0] == before[0]:
            return before[1]
        return before[1] + (after[1] - before[1]) * (when - before[0]) / (after[0] - before[0])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def memory_rows(label: str, peaks: dict[int, dict[str, int]]) -> Iterator[str]:
    for n, sample in enumerate(peaks.values()):
        mib = {k: v / 1024 for k, v in sample.items()}
        yield (f"| {label} worker {n} | {mib['rss']:.0f} | {mib['pss']:.0f} | {mib['uss']:.0f} | "
               f"{mib['program']:.0f} |")  # fmt: skip


def load_label(before: float, after: float) -> str:
    """How loaded the machine was: the 1-minute load average around the rounds, and a warning when
    other work competed for the cores (a load above 0.5 before the first round is not ours)."""
    cpus = os.cpu_count() or 1
    text = f"Load average {before:.1f} before the rounds, {after:.1f} after, on {cpus} CPUs."
    if before > 0.5:  # before the rounds, the load is other work
        text += (" **Measured under load**: other work competed for the cores, so wall-clock rates (and the"
                 " \"vs loop\" column) understate scaling; CPU ms/request is the stabler figure.")  # fmt: skip
    return text


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=sorted(MODELS))
    parser.add_argument("--requests", type=int, default=128)  # a few seconds per engine: rates settle
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="local engines only")
    parser.add_argument("--memory-model", default=None, choices=sorted(MODELS),
                        help="also measure memory per worker on this program (default: --model)")  # fmt: skip
    args = parser.parse_args()

    tokenizer = build_tokenizer()
    vocab = tokenizer_vocab_size(tokenizer)
    program = build_program(ProgramSpec(decoder=MODELS[args.model](vocab)))
    folder = Path(tempfile.mkdtemp(prefix="mmcore-bench-batch-"))
    texts = prompts(args.requests)
    requests = write_requests(folder, texts, args.max_tokens)
    options = ModelOptions(str(program), tokenizer=str(tokenizer), media_dir=str(folder))

    engines: dict[str, Callable[[], Run]] = {
        "loop of runner.generate (1 process)": lambda: time_loop(options, texts, args.max_tokens),
        "local, 1 worker": lambda: time_engine(InlineEngine(options), requests, lambda: [os.getpid()]),
        "local, 2 workers": lambda: time_engine(ProcessPoolEngine(options, 2), requests, _job_and_pool),
    }
    workers = {"loop of runner.generate (1 process)": 1, "local, 1 worker": 1, "local, 2 workers": 2}
    ray: Any = None
    if not args.no_ray:
        import logging

        import ray

        from mmcore.batch.ray import RayEngine

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
        print(f"(Ray instance started in {time.perf_counter() - t:.1f} s)")
        engines["Ray, 1 actor"] = lambda: time_engine(RayEngine(options, 1), requests, _job_and_ray)
        engines["Ray, 2 actors"] = lambda: time_engine(RayEngine(options, 2), requests, _job_and_ray)
        workers.update({"Ray, 1 actor": 1, "Ray, 2 actors": 2})

    load_before = os.getloadavg()[0]
    runs: dict[str, list[Run]] = {name: [] for name in engines}
    for round_ in range(args.repeats):
        for name, run in engines.items():
            runs[name].append(run())
            print(f"round {round_ + 1} {name}: {runs[name][-1]}", flush=True)

    base = statistics.median(r.rate for r in runs["loop of runner.generate (1 process)"])
    print(f"\n{args.requests} requests, {args.max_tokens} new tokens each (greedy), {args.model} program, "
          f"{os.cpu_count()} CPUs, medians of {args.repeats} interleaved rounds\n")  # fmt: skip
    print(load_label(load_before, os.getloadavg()[0]) + "\n")
    print("| engine | requests/s | vs loop | start-up s | worker ms/request | overhead ms/request | CPU ms/request |")
    print("|---|---|---|---|---|---|---|")
    for name, measured in runs.items():
        rate = statistics.median(r.rate for r in measured)
        startup = statistics.median(r.startup_s for r in measured)
        worker_s = statistics.median(r.worker_s for r in measured)
        overhead = workers[name] / rate - worker_s
        cpu = statistics.median(r.cpu_s for r in measured)
        print(f"| {name} | {rate:.2f} | {rate / base:.2f}x | {startup:.1f} | {worker_s * 1000:.1f} | "
              f"{overhead * 1000:.1f} | {cpu * 1000:.1f} |")  # fmt: skip

    memory_model = args.memory_model or args.model
    mem_program = build_program(ProgramSpec(decoder=MODELS[memory_model](vocab)))
    mem_options = dataclasses.replace(options, program=str(mem_program))
    mem_requests = write_requests(folder, texts[:8], 8)
    size = mem_program.stat().st_size / 2**20
    print(f"\nMemory per worker, 2 workers, {memory_model} program ({size:.0f} MiB file), MiB:\n")
    print("| process | RSS | PSS | USS (private) | program pages (shared) |")
    print("|---|---|---|---|---|")
    with Sampler(_pool_workers, mem_program) as sampler:
        time_engine(ProcessPoolEngine(mem_options, 2), mem_requests, lambda: [])
    print("\n".join(memory_rows("local", sampler.peaks)))
    if ray is not None:
        from mmcore.batch.ray import RayEngine

        with Sampler(_ray_workers, mem_program) as sampler:
            time_engine(RayEngine(mem_options, 2), mem_requests, lambda: [])
        print("\n".join(memory_rows("Ray", sampler.peaks)))
        ray.shutdown()


if __name__ == "__main__":
    main()
