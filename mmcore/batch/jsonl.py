"""OpenAI Batch API lines: reading and checking the input, building output lines, the one appending
writer, and reading back what a previous run finished."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.errors import MMCoreError

__all__ = [
    "BatchInputError",
    "BatchOutputError",
    "BatchRequest",
    "ENDPOINTS",
    "InputIndex",
    "ResultWriter",
    "error_line",
    "index_input",
    "read_finished",
    "response_line",
    "validate_output_line",
]

#: The endpoints a batch line may name.
ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
_MAX_LISTED = 10  # problems listed in one error message


class BatchInputError(MMCoreError):
    """The input file cannot be run as a batch (missing or duplicate custom_ids, unreadable lines)."""


class BatchOutputError(MMCoreError):
    """The output file holds lines that are not results of this input."""


@dataclass(frozen=True)
class BatchRequest:
    """One input line: its `custom_id`, line number (1-based), and the line's JSON object."""

    custom_id: str
    line_number: int
    line: Mapping[str, Any]

    @property
    def url(self) -> Any:
        return self.line.get("url")

    @property
    def body(self) -> Any:
        return self.line.get("body")

    def problem(self) -> str | None:
        """What makes this line unrunnable (recorded as its error), or None."""
        method, url, body = self.line.get("method", "POST"), self.url, self.body
        if method != "POST":
            return f"'method' must be \"POST\", got {method!r}"
        if url not in ENDPOINTS:
            return f"'url' must be one of {', '.join(ENDPOINTS)}, got {url!r}"
        if not isinstance(body, Mapping):
            return f"'body' must be a JSON object (the request body), got {type(body).__name__}"
        return None


@dataclass(frozen=True)
class _Entry:
    custom_id: str
    line_number: int
    offset: int
    length: int


class InputIndex:
    """Where each request of an input JSONL file sits (requests are re-read on demand, so a file
    of inline media is never held in memory whole)."""

    def __init__(self, path: Path, entries: list[_Entry]) -> None:
        self.path = path
        self._entries = entries
        self._by_id = {e.custom_id: e for e in entries}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, custom_id: object) -> bool:
        return custom_id in self._by_id

    @property
    def custom_ids(self) -> list[str]:
        """Every custom_id, in input order."""
        return [e.custom_id for e in self._entries]

    def read(self, custom_id: str) -> BatchRequest:
        """The request of `custom_id`, parsed again from the file."""
        entry = self._by_id[custom_id]
        with self.path.open("rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.length)
        return BatchRequest(entry.custom_id, entry.line_number, json.loads(raw))

    def raw_line(self, custom_id: str) -> bytes:
        """The input line of `custom_id` as it is in the file (without its newline)."""
        entry = self._by_id[custom_id]
        with self.path.open("rb") as f:
            f.seek(entry.offset)
            return f.read(entry.length)

    def __iter__(self) -> Iterator[BatchRequest]:
        with self.path.open("rb") as f:
            for entry in self._entries:
                f.seek(entry.offset)
                yield BatchRequest(entry.custom_id, entry.line_number, json.loads(f.read(entry.length)))


def index_input(path: str | os.PathLike[str]) -> InputIndex:
    """Read and check an input file before any work starts.

    Every non-blank line must be a JSON object with a non-empty string `custom_id`, unique in the
    file. Raises `BatchInputError` listing the offending lines otherwise; other problems of a line
    (method, url, body) are recorded as that request's error when the job runs.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BatchInputError(f"cannot read the input file {path}: {exc.strerror or exc}") from exc
    entries: list[_Entry] = []
    first_line: dict[str, int] = {}
    problems: list[str] = []
    offset = 0
    with handle:
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            text = raw.rstrip(b"\r\n")
            if not text.strip():
                continue
            custom_id, problem = _custom_id(text)
            if problem is not None:
                problems.append(f"line {number}: {problem}")
            elif custom_id in first_line:
                problems.append(f"line {number}: custom_id {custom_id!r} repeats line {first_line[custom_id]}")
            else:
                assert custom_id is not None
                first_line[custom_id] = number
                entries.append(_Entry(custom_id, number, start, len(text)))
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise BatchInputError(
            f"{path}: {len(problems)} line(s) cannot be run: {listed}{more}. Each line must be a JSON object "
            'like {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {...}} with a '
            "custom_id used once; fix these lines and rerun"
        )
    return InputIndex(path, entries)


def _custom_id(text: bytes) -> tuple[str | None, str | None]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, expected an object"
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, f"custom_id must be a non-empty string, got {custom_id!r}"
    return custom_id, None


# -- output lines ----------------------------------------------------------------------------------
def _line_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def response_line(custom_id: str, status_code: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """The output line of a request the endpoint answered (`body` as the server returns it; an
    error status carries the error envelope as `body` and its code and message as `error`)."""
    error = None
    if status_code >= 400:
        envelope = body.get("error")
        envelope = envelope if isinstance(envelope, Mapping) else {}
        error = {"code": str(envelope.get("code") or envelope.get("type") or "error"),
                 "message": str(envelope.get("message", ""))}  # fmt: skip
    return {
        "id": _line_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": f"req_{uuid.uuid4().hex}", "body": dict(body)},
        "error": error,
    }


def error_line(custom_id: str, code: str, message: str, status_code: int = 400) -> dict[str, Any]:
    """The output line of a request that failed: the OpenAI error envelope the server would send,
    and the `error` object."""
    envelope = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    if status_code >= 500:
        envelope["error"]["type"] = "server_error"
    return response_line(custom_id, status_code, envelope)


def validate_output_line(line: Mapping[str, Any]) -> None:
    """Raise `BatchOutputError` unless `line` has the Batch API output line's shape."""

    def fail(why: str) -> None:
        raise BatchOutputError(f"not a Batch API output line ({why}): {json.dumps(line)[:200]}")

    if set(line) != {"id", "custom_id", "response", "error"}:
        fail(f"keys must be id, custom_id, response, error; got {sorted(line)}")
    if not isinstance(line["id"], str) or not isinstance(line["custom_id"], str):
        fail("id and custom_id must be strings")
    response, error = line["response"], line["error"]
    if response is None and error is None:
        fail("a line has a response, an error or both")
    if response is not None:
        if not isinstance(response, Mapping) or not isinstance(response.get("status_code"), int):
            fail("response must be an object with an integer status_code")
        if not isinstance(response.get("body"), Mapping):
            fail("response.body must be an object")
        if response["status_code"] >= 400 and error is None:
            fail("an error status needs an error object")
    if error is not None and not (
        isinstance(error, Mapping) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
    ):
        fail("error must be null or an object with string code and message")


# -- the appending writer --------------------------------------------------------------------------
class ResultWriter:
    """The one writer of an output file: appends one complete line per result.

    Each line goes out in a single `os.write` on an `O_APPEND` descriptor, so the file only ever
    grows by whole lines (a kill can at worst leave the last line unfinished, which `read_finished`
    removes). Data is fsynced every `fsync_every` seconds and on close.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync_every: float = 1.0) -> None:
        self.path = Path(path)
        self.fsync_every = fsync_every
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BatchOutputError(f"cannot open the output file {self.path}: {exc.strerror or exc}") from exc
        self._last_sync = time.monotonic()
        self.lines_written = 0

    def write(self, line: Mapping[str, Any]) -> None:
        """Append `line` as one JSON line."""
        if self._fd is None:
            raise BatchOutputError(f"the writer of {self.path} is closed")
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:  # a regular file takes the whole line at once; loop only on a short write
            view = view[os.write(self._fd, view) :]
        self.lines_written += 1
        if time.monotonic() - self._last_sync >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        """Push what was written to the disk."""
        if self._fd is not None:
            os.fsync(self._fd)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_finished(path: str | os.PathLike[str], index: InputIndex | None = None) -> dict[str, dict[str, Any]]:
    """The output lines a previous run finished, by custom_id.

    An unfinished last line (the run was killed while writing it) is cut off the file. Raises
    `BatchOutputError` for a complete line that is not a Batch API output line, or (given the
    input's `index`) one whose custom_id is not in the input.
    """
    path = Path(path)
    if not path.exists():
        return {}
    with path.open("rb+") as f:
        data = f.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            f.truncate(complete)
            f.flush()
            os.fsync(f.fileno())
    finished: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(data[:complete].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BatchOutputError(
                f"{path} line {number} is not JSON ({exc}); it is not an mmcore batch output: use a new -o path"
            ) from exc
        if not isinstance(line, dict):
            raise BatchOutputError(f"{path} line {number} is not a JSON object; use a new -o path")
        validate_output_line(line)
        custom_id = line["custom_id"]
        if index is not None and custom_id not in index:
            raise BatchOutputError(
                f"{path} line {number} answers custom_id {custom_id!r}, which is not in {index.path}: the output "
                "belongs to another input; use a new -o path"
            )
        finished[custom_id] = line
    return finished
