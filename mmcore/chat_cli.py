"""`mmcore chat`: an interactive conversation, or a JSON-lines protocol for scripts."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from mmcore.chat import Renderer
from mmcore.config import GenerationConfig
from mmcore.errors import MMCoreError
from mmcore.runner import GenerationResult, MultimodalRunner
from mmcore.session import Session

__all__ = ["run_chat", "answer_json_line"]


def run_chat(
    runner: Any, config: GenerationConfig, args: argparse.Namespace, *, renderer: Renderer | None = None
) -> int:
    """Run `mmcore chat` on stdin/stdout (rendering with `renderer`, e.g. a model adapter's); returns
    the exit status."""
    if not isinstance(runner, MultimodalRunner):
        raise MMCoreError("mmcore chat needs a multimodal program (token_embedding + text_decoder)")
    session = Session(runner, renderer=renderer, context_policy=args.context_policy, system=args.system)
    if args.jsonl:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(answer_json_line(session, line, config)), flush=True)
        return 0
    return _interactive(session, config, sys.stdin, sys.stdout)


def answer_json_line(session: Session, line: str, config: GenerationConfig) -> dict[str, Any]:
    """The JSON answer to one JSON-lines request: a message, or `{"command": "reset"}`."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise MMCoreError(f"each line must be a JSON object, got {type(request).__name__}")
        if "command" in request:
            if request["command"] != "reset":
                raise MMCoreError(f"unknown command {request['command']!r}; the only command is 'reset'")
            session.reset()
            return {"ok": True}
        result = session.send(request, config)
        return {"text": result.text, "tokens": result.tokens, "stats": _stats(result)}
    except (MMCoreError, json.JSONDecodeError, ValueError, TypeError) as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}


def _stats(result: GenerationResult) -> dict[str, Any]:
    extra = result.stats.extra
    return {
        **result.stats.to_dict(),
        "new_prompt_tokens": extra.get("new_prompt_tokens", 0),
        "reused_prompt_tokens": extra.get("reused_prompt_tokens", 0),
        "encoder_cache_hits": extra.get("encoder_cache_hits", 0),
    }


_HELP = (
    "/image PATH, /audio PATH attach media to your next message; /reset; /stats; /help; "
    "Ctrl-C stops an answer; Ctrl-D exits"
)


def _interactive(session: Session, config: GenerationConfig, stdin: TextIO, stdout: TextIO) -> int:
    registry = session.runner._plugins().modality_registry()
    attachments: list[dict[str, Any]] = []
    last: GenerationResult | None = None
    stdout.write(f"mmcore chat ({_HELP})\n")
    while True:
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            return 0
        line = line.rstrip("\n")
        command, _, rest = line.partition(" ")
        if command in ("/image", "/audio"):
            kind = command[1:]
            if registry.get(kind) is None:
                stdout.write(f"no plugin handles {kind} (pip install mmcore-{kind})\n")
            else:
                attachments.append({"type": kind, kind: rest.strip()})
            continue
        if command == "/reset":
            session.reset()
            attachments.clear()
            stdout.write("(conversation reset)\n")
            continue
        if command == "/stats":
            stdout.write(json.dumps(_stats(last)) + "\n" if last else "(no turn yet)\n")
            continue
        if command == "/help":
            stdout.write(_HELP + "\n")
            continue
        content = [*attachments, {"type": "text", "text": line}] if line else attachments
        attachments = []
        try:
            with _ctrl_c_stops(session):
                last = session.send({"role": "user", "content": content}, config, token_callback=_writer(stdout))
            stdout.write("\n")
        except MMCoreError as exc:
            stdout.write(f"mmcore: error: {exc}\n")


def _writer(stdout: TextIO) -> Any:
    def write(piece: str) -> None:
        stdout.write(piece)
        stdout.flush()

    return write


@contextmanager
def _ctrl_c_stops(session: Session) -> Iterator[None]:
    """During an answer, Ctrl-C ends the answer (the conversation keeps what was said)."""
    previous = signal.signal(signal.SIGINT, lambda *_: session.runner.stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
