"""The audio input type."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Any

from mmcore.errors import InvalidInputError

__all__ = ["AudioInput", "AudioSource"]

#: A file path, encoded bytes, a binary file object, or a numpy array / torch tensor of samples.
AudioSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Any


@dataclass(frozen=True, eq=False)
class AudioInput:
    """A piece of audio for the prompt.

    `source` is one of:

    - a path (`str` or `os.PathLike`) to a file soundfile reads (WAV, FLAC, OGG, ...);
    - the encoded bytes of such a file (`bytes`, `bytearray`, `memoryview`);
    - a binary file object open for reading;
    - samples as a numpy array or torch tensor: 1-D mono, or 2-D with the smaller dimension taken as
      channels (`[channels, samples]` or `[samples, channels]`). Float samples are in [-1, 1];
      integer samples are PCM and scaled to [-1, 1). Arrays need `sample_rate`.

    For encoded sources the file's own rate is used; a `sample_rate` given with one must equal it.
    Channels are averaged to mono and the audio is resampled to the model's rate.
    """

    source: AudioSource
    sample_rate: float | None = None

    def __post_init__(self) -> None:
        rate = self.sample_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0):
            raise InvalidInputError(f"AudioInput sample_rate must be a positive number of Hz, got {rate!r}")

    def __repr__(self) -> str:
        source = self.source
        if isinstance(source, bytes | bytearray | memoryview):
            described = f"<{len(source)} bytes>"
        elif hasattr(source, "shape"):
            described = f"<{type(source).__name__} shape={list(source.shape)}>"
        else:
            described = repr(source)
        rate = "" if self.sample_rate is None else f", sample_rate={self.sample_rate:g}"
        return f"AudioInput({described}{rate})"
