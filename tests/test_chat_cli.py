"""`mmcore chat`: the JSON-lines protocol and the interactive loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmcore.testing import VisionEncoderSpec


@pytest.fixture
def pte(make_spec, program_path):
    return program_path(make_spec(vision=VisionEncoderSpec(), decoder_max_context_len=128))


def chat(pte, tokenizer_dir, lines: list[str], *extra: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "mmcore", "chat", str(pte), "--tokenizer", str(tokenizer_dir), "--jsonl",
         "--max-new-tokens", "6", *extra],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_jsonl_protocol(pte, tokenizer_dir, tmp_path):
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(photo)
    turn = {"role": "user", "content": [{"type": "image", "image": str(photo)}, {"type": "text", "text": "what"}]}
    too_long = {"role": "user", "content": "the quick brown fox " * 40}
    answers = chat(pte, tokenizer_dir, [
        json.dumps(turn), json.dumps({"role": "user", "content": "and then"}), json.dumps(too_long),
        "not json", json.dumps({"command": "reset"}), json.dumps(turn),
    ])  # fmt: skip
    first, second, overflow, garbage, reset, again = answers
    assert len(first["tokens"]) == 6 and first["stats"]["reused_prompt_tokens"] == 0
    assert first["finish_reason"] == "length"
    assert first["stats"]["encoder_cache_hits"] == 0 and "prefill_token_per_sec" in first["stats"]
    assert second["stats"]["reused_prompt_tokens"] > 16 and second["stats"]["encoder_cache_hits"] == 1
    assert overflow["error"]["type"] == "ContextOverflowError"
    assert garbage["error"]["type"] == "JSONDecodeError"
    assert reset == {"ok": True}
    assert again["tokens"] == first["tokens"]  # the session carried on exactly as before
    assert again["stats"]["encoder_cache_hits"] == 1  # after the reset the image comes from the cache


def test_generation_flags_apply_to_every_turn(pte, tokenizer_dir):
    import re

    turns = [json.dumps({"role": "user", "content": text}) for text in ("the quick brown fox", "jumps")]
    answers = chat(pte, tokenizer_dir, turns, "--logprobs", "--regex", "(yes|no)", "--max-new-tokens", "8")
    for answer in answers:
        assert re.fullmatch("(yes|no)", answer["text"]) and answer["finish_reason"] == "stop"
        assert answer["incomplete"] is False
        assert len(answer["logprobs"]) == len(answer["tokens"]) and all(lp <= 0 for lp in answer["logprobs"])


def test_overflowing_turn_leaves_the_session_as_before(pte, tokenizer_dir):
    turn = json.dumps({"role": "user", "content": "the quick brown fox"})
    follow = json.dumps({"role": "user", "content": "jumps"})
    too_long = json.dumps({"role": "user", "content": "the quick brown fox " * 40})
    with_error = chat(pte, tokenizer_dir, [turn, too_long, follow])
    without = chat(pte, tokenizer_dir, [turn, follow])
    assert with_error[2]["tokens"] == without[1]["tokens"]


def test_interactive_chat(pte, tokenizer_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "mmcore", "chat", str(pte), "--tokenizer", str(tokenizer_dir), "--max-new-tokens", "4"],
        input="the quick brown fox\n/stats\n/reset\n/help\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert '"reused_prompt_tokens": 0' in proc.stdout and "(conversation reset)" in proc.stdout


def test_interactive_chat_in_a_terminal_has_line_editing_and_history(pte, tokenizer_dir, tmp_path):
    """On a terminal, input goes through readline: the up arrow recalls the previous line, and the
    history is kept in the user state folder (here a temporary `XDG_STATE_HOME`)."""
    import os
    import pty
    import select
    import time

    from mmcore.demo import sample_image

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmcore", "chat", str(pte), "--tokenizer", str(tokenizer_dir), "--max-new-tokens", "4"],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def until(marker: bytes, count: int = 1) -> None:
        nonlocal seen
        deadline = time.monotonic() + 120
        while seen.count(marker) < count:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                seen += os.read(master, 4096)

    try:
        until(b"> ")
        os.write(master, b"/help\r")
        until(b"> ", 2)
        os.write(master, b"\x1b[A\r")  # up arrow: the last line again
        until(b"> ", 3)
        os.write(master, b"\x04")  # Ctrl-D
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert text.count("Ctrl-D exits") == 3  # the banner, /help, and /help recalled by the up arrow
    assert str(sample_image()) in text  # where the demo's sample files are
    history = tmp_path / "state" / "mmcore" / "chat_history"
    assert "/help" in history.read_text()
