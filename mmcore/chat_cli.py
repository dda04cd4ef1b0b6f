"""`mmcore chat`: an interactive conversation, or a JSON-lines protocol for scripts."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from mmcore.chat import Renderer
from mmcore.cli import FINISH_REASONS
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
    if sys.stdin.isatty() and sys.stdout.isatty():
        with _line_editing() as read_line:
            return _interactive(session, config, read_line, sys.stdout)
    return _interactive(session, config, _plain_reader(sys.stdin, sys.stdout), sys.stdout)


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
        answer: dict[str, Any] = {
            "text": result.text,
            "tokens": result.tokens,
            "finish_reason": FINISH_REASONS[result.stop_reason],
            "incomplete": result.incomplete,
            "stats": _stats(result),
        }
        if result.logprobs is not None:
            answer["logprobs"] = result.logprobs
        return answer
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


#: `read_line(prompt)`: the next line without its newline, or None at the end of input.
LineReader = Callable[[str], "str | None"]
_PROMPT = "> "


def history_file() -> Path:
    """Where interactive `mmcore chat` keeps its input history (platformdirs' user state folder;
    `$XDG_STATE_HOME/mmcore/chat_history` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("mmcore", appauthor=False)) / "chat_history"


@contextmanager
def _line_editing() -> Iterator[LineReader]:
    """`input()` with readline: line editing, and a history kept between runs (in `history_file`)."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Python built without readline (Windows)
        yield _plain_reader(sys.stdin, sys.stdout)
        return
    path = history_file()
    try:
        readline.read_history_file(path)
    except OSError:
        pass  # no history yet
    readline.set_history_length(1000)

    def read_line(prompt: str) -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None

    try:
        yield read_line
    finally:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass  # a read-only home: the history is not kept


def _plain_reader(stdin: TextIO, stdout: TextIO) -> LineReader:
    """Lines from a pipe or file (no line editing)."""

    def read_line(prompt: str) -> str | None:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        return line.rstrip("\n") if line else None

    return read_line


def _samples_hint(registry: Any) -> str:
    """Where the demo model's sample files are, for the kinds a plugin handles."""
    from mmcore.demo import sample_audio, sample_image

    hints = [f"/{kind} {path}" for kind, path in (("image", sample_image()), ("audio", sample_audio()))
             if registry.get(kind) is not None]  # fmt: skip
    return f"sample files (the demo model's): {'  '.join(hints)}\n" if hints else ""


def _interactive(session: Session, config: GenerationConfig, read_line: LineReader, stdout: TextIO) -> int:
    registry = session.runner._plugins().modality_registry()
    attachments: list[dict[str, Any]] = []
    last: GenerationResult | None = None
    stdout.write(f"mmcore chat ({_HELP})\n{_samples_hint(registry)}")
    while True:
        line = read_line(_PROMPT)
        if line is None:
            stdout.write("\n")
            return 0
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
