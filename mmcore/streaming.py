"""Incremental detokenisation: text deltas that are whole characters, with stop strings held back."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

from mmcore.tokenizer import Tokenizer

__all__ = ["TextStreamer"]

_REPLACEMENT = "\ufffd"


class TextStreamer:
    """Turns token ids into text deltas, one `push` per token.

    A character split across tokens is held back until complete, so no delta ever ends in an
    undecodable byte sequence. Text that could be the start of a stop string is held back until
    it is known not to be one; when a stop string appears, `stopped` is set and the text before
    it is the last delta.
    """

    def __init__(self, tokenizer: Tokenizer, *, stop: Sequence[str] = (), skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._stop = tuple(stop)
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the window re-decoded for context
        self._read_offset = 0  # ids before this are already turned into text
        self._held = ""  # decoded text not yet emitted (possible stop-string start)
        self.text = ""  # everything emitted so far
        self.stopped = False
        # Byte-level tokenizers: concatenate token bytes through an incremental UTF-8 decoder.
        token_bytes = getattr(tokenizer, "token_bytes", None)
        self._token_bytes: Callable[..., bytes] | None = token_bytes if callable(token_bytes) else None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        """Add one token; return the text that is now safe to emit (often empty)."""
        if self.stopped:
            return ""
        if self._token_bytes is not None:
            delta = self._utf8.decode(self._token_bytes(token, skip_special_tokens=self._skip_special))
            return self._release(delta) if delta else ""
        self._ids.append(token)
        decode = self._tokenizer.decode
        window = self._ids[self._prefix_offset :]
        new_text = decode(window, skip_special_tokens=self._skip_special)
        if new_text.endswith(_REPLACEMENT):
            return ""  # an incomplete character: wait for the next token
        read = self._read_offset - self._prefix_offset
        prefix_text = decode(window[:read], skip_special_tokens=self._skip_special) if read else ""
        if len(new_text) <= len(prefix_text):
            return ""
        delta = new_text[len(prefix_text) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return self._release(delta)

    def flush(self) -> str:
        """At the end of generation: emit what was held back (an unfinished stop string included)."""
        if self.stopped:
            return ""
        if self._token_bytes is not None:
            self._held += self._utf8.decode(b"", final=True).rstrip(_REPLACEMENT)
        tail = self._ids[self._read_offset :]
        if tail:
            window = self._ids[self._prefix_offset :]
            read = self._read_offset - self._prefix_offset
            full = self._tokenizer.decode(window, skip_special_tokens=self._skip_special)
            prefix = self._tokenizer.decode(window[:read], skip_special_tokens=self._skip_special) if read else ""
            self._held += full[len(prefix) :].rstrip(_REPLACEMENT)
            self._read_offset = len(self._ids)
        out, self._held = self._held, ""
        self.text += out
        return out

    def _release(self, delta: str) -> str:
        if not self._stop:
            self.text += delta
            return delta
        pending = self._held + delta
        cut = min((i for i in (pending.find(s) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            self.text += pending[:cut]
            return pending[:cut]
        keep = _longest_stop_prefix_suffix(pending, self._stop)
        out = pending[: len(pending) - keep]
        self._held = pending[len(pending) - keep :]
        self.text += out
        return out


def _longest_stop_prefix_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
