"""Shared pieces of the `mmcore batch` tests: request files, reading outputs, killing a job part-way."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mmcore.batch.jsonl import validate_output_line

PROMPTS = ("the cat sees", "a dog likes the red ball", "my friend walks past", "the river", "our team builds")


def chat_line(custom_id: str, content: Any, *, max_tokens: int = 6, **sampling: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, **sampling}  # fmt: skip
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def read_output(path: Path) -> dict[str, dict[str, Any]]:
    """Output lines by custom_id, each validated; fails on a repeated custom_id or a torn line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the output ends in an unfinished line"
    by_id: dict[str, dict[str, Any]] = {}
    for raw in data.splitlines():
        line = json.loads(raw)
        validate_output_line(line)
        assert line["custom_id"] not in by_id, f"{line['custom_id']} answered twice"
        by_id[line["custom_id"]] = line
    return by_id


def answer_of(line: dict[str, Any]) -> tuple[str, list[int]]:
    """What must not depend on the engine: the text and the token ids."""
    body = line["response"]["body"]
    choice = body["choices"][0]
    text = choice["message"]["content"] if "message" in choice else choice["text"]
    return text, body["mmcore"]["token_ids"]


def png_data_uri(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> tuple[str, bytes]:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode(), data


def batch_command(pte: Path, tokenizer_dir: Path, input_path: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmcore", "batch", str(pte), str(input_path), "-o", str(output),
            "--tokenizer", str(tokenizer_dir), *extra]  # fmt: skip


def children_of(pid: int) -> list[int]:
    """Descendant processes of `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            direct = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in direct:
            found += [child, *children_of(child)]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_part_way(command: list[str], output: Path, signum: int, *, after_lines: int, timeout: float = 240
                  ) -> tuple[int, list[int]]:  # fmt: skip
    """Start `command`, send `signum` once `output` holds `after_lines` lines; return its exit code
    and the child processes it had."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    children: list[int] = []
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the job ended before it was signalled: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        children = children_of(proc.pid) or children
        if output.exists() and output.read_bytes().count(b"\n") >= after_lines:
            break
        time.sleep(0.02)
    else:
        proc.kill()
        raise AssertionError("the job wrote too few lines in time")
    proc.send_signal(signum)
    code = proc.wait(timeout=120)
    proc.stderr.close()  # type: ignore[union-attr]
    return code, children


def wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


__all__ = [
    "PROMPTS",
    "alive",
    "answer_of",
    "batch_command",
    "chat_line",
    "children_of",
    "image_part",
    "kill_part_way",
    "png_data_uri",
    "read_output",
    "signal",
    "wait_gone",
    "write_lines",
]
