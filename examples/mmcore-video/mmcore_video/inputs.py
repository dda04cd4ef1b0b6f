"""The video input type."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from mmcore.errors import InvalidInputError

__all__ = ["VideoInput", "VideoSource", "describe_video"]

#: What a `VideoInput` may wrap: a directory of frame images or an animated image file (a path),
#: the encoded bytes of an animated image, or decoded frames as a numpy array `[T, H, W, 3]`.
VideoSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | np.ndarray[Any, Any]


@dataclass(frozen=True, eq=False)
class VideoInput:
    """One video of a request; frames are read and sampled when the request is prefilled.

    `frames` overrides the `frames` setting for this input (how many frames to sample, evenly
    spaced). A video with fewer frames than asked contributes all of its frames.
    """

    source: VideoSource
    frames: int | None = None

    def __post_init__(self) -> None:
        frames = self.frames
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames < 1):
            raise InvalidInputError(f"VideoInput frames must be a positive integer or None, got {frames!r}")

    def __repr__(self) -> str:
        extra = "" if self.frames is None else f", frames={self.frames}"
        return f"VideoInput({describe_video(self.source)}{extra})"


def describe_video(source: object) -> str:
    """A short description of a video source for messages (never its whole content)."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray)):
        return f"{len(source)} bytes"
    if isinstance(source, np.ndarray):
        return f"numpy {source.dtype}{list(source.shape)}"
    return type(source).__name__
