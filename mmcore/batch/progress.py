"""The progress bar on stderr and the end-of-job summary."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["JobStats", "Progress", "format_summary"]


@dataclass
class JobStats:
    """What a job did: requests done this run (and how many errored), tokens, time per worker."""

    total: int = 0
    skipped: int = 0  # finished by an earlier run
    done: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    worker_tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    worker_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def record(self, *, error: bool, prompt_tokens: int, completion_tokens: int, worker: str, seconds: float) -> None:
        self.done += 1
        self.errors += int(error)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.worker_tokens[worker] += completion_tokens
        self.worker_seconds[worker] += seconds

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done

    @property
    def wall_seconds(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.total,
            "skipped": self.skipped,
            "done": self.done,
            "errors": self.errors,
            "remaining": self.remaining,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_seconds": round(self.wall_seconds, 3),
            "tokens_per_second_per_worker": {
                w: round(self.worker_tokens[w] / s, 2) if s > 0 else 0.0 for w, s in sorted(self.worker_seconds.items())
            },
        }


class Progress:
    """A one-line bar (done/total, rate, ETA, errors) redrawn on a terminal, or a plain line every
    `interval` seconds when stderr is a file; silent when `quiet`."""

    def __init__(self, stats: JobStats, *, quiet: bool = False, stream: TextIO | None = None,
                 interval: float = 10.0) -> None:  # fmt: skip
        self.stats = stats
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.1 if self.tty else interval
        self._last = 0.0

    def update(self, *, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        line = self._line()
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.quiet:
            return
        self.update(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self) -> str:
        s = self.stats
        todo = s.total - s.skipped
        elapsed = s.wall_seconds
        rate = s.done / elapsed if elapsed > 0 else 0.0
        eta = _clock(s.remaining / rate) if rate > 0 else "--:--"
        width = 24
        filled = int(width * s.done / todo) if todo else width
        bar = "#" * filled + "-" * (width - filled)
        return f"[{bar}] {s.done}/{todo} {rate:.2f} req/s ETA {eta} errors {s.errors}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_summary(stats: JobStats, *, stopped: bool = False) -> str:
    """The end-of-job summary: requests, tokens, wall time, tokens/s per worker."""
    s = stats
    lines = [
        f"{'stopped' if stopped else 'finished'}: {s.done} request(s) this run ({s.errors} error(s)), "
        f"{s.skipped} already in the output, {s.remaining} left of {s.total}",
        f"tokens: {s.prompt_tokens} prompt, {s.completion_tokens} completion; wall time {s.wall_seconds:.1f} s",
    ]
    for worker, seconds in sorted(s.worker_seconds.items()):
        rate = s.worker_tokens[worker] / seconds if seconds > 0 else 0.0
        lines.append(f"  {worker}: {s.worker_tokens[worker]} tokens, {rate:.1f} tokens/s")
    if stopped and s.remaining:
        lines.append("rerun the same command to finish the remaining requests")
    return "\n".join(lines)
