"""Streaming text: whole characters only, and stop strings never leak."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mmcore.streaming import TextStreamer


class ByteTokenizer:
    """One token per UTF-8 byte (ids 0-255) plus a special token 256, like a byte-fallback BPE."""

    bos_id = None
    eos_ids = frozenset({256})
    vocab_size = 257

    def encode(self, text: str, *, bos: int = 0, eos: int = 0) -> list[int]:
        return list(text.encode())

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        data = bytes(i for i in ids if i < 256)
        special = "" if skip_special_tokens else "<eos>" * sum(1 for i in ids if i == 256)
        return data.decode("utf-8", errors="replace") + special


def stream(text: str, **kwargs) -> tuple[list[str], TextStreamer]:
    streamer = TextStreamer(ByteTokenizer(), **kwargs)
    pieces = [streamer.push(t) for t in ByteTokenizer().encode(text)]
    pieces.append(streamer.flush())
    return [p for p in pieces if p], streamer


@pytest.mark.parametrize("text", ["héllo wörld", "日本語のテキスト", "emoji 🎉🙂 ok", "ascii only"])
def test_split_characters_are_held_until_complete(text):
    pieces, streamer = stream(text)
    assert "".join(pieces) == text == streamer.text
    assert all("\ufffd" not in p for p in pieces)
    for piece in pieces:
        piece.encode("utf-8")  # every piece is valid text on its own


def test_special_tokens_are_left_out_of_the_text():
    streamer = TextStreamer(ByteTokenizer())
    out = [streamer.push(t) for t in [104, 105, 256]]
    assert "".join(out) + streamer.flush() == "hi"


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("hello END world", ["END"], "hello "),
        ("hello EN", ["END"], "hello EN"),  # an unfinished stop string is released at the end
        ("a\n\nUser: hi", ["\nUser:", "###"], "a\n"),
        ("no stop here", ["xyz"], "no stop here"),
        ("ééSTOPé", ["STOP"], "éé"),
    ],
)
def test_stop_strings_never_leak(text, stops, expected):
    pieces, streamer = stream(text, stop=stops)
    assert "".join(pieces) == expected == streamer.text
    assert streamer.stopped == any(s in text for s in stops)
    for stop in stops:
        assert stop not in "".join(pieces)


def test_text_that_may_start_a_stop_string_is_held_back():
    streamer = TextStreamer(ByteTokenizer(), stop=["STOP"])
    emitted = [streamer.push(t) for t in b"abST"]
    assert "".join(emitted) == "ab"  # "ST" could be the start of "STOP"
    assert streamer.push(ord("x")) == "STx"
