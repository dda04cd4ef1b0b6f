"""Reading a video and picking its sampled frames, as sources the image plugin can preprocess.

Sampling: a video of `total` frames asked for `wanted` frames is cut into `wanted` equal spans
and the frame at the centre of each span is kept (`(2 * i + 1) * total // (2 * wanted)`), so the
frames are evenly spaced and always distinct. A video with `total <= wanted` frames contributes
all of them, in order. Only the sampled frames are decoded.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from mmcore_image import ALLOWED_FORMATS, ImageSource
from PIL import Image

from mmcore.errors import InvalidInputError

__all__ = ["FRAME_SUFFIXES", "Frame", "read_frames", "sample_indices"]

#: File suffixes (lower case) of the frame images read from a directory.
FRAME_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".tga", ".avif"}
)

#: One sampled frame: a label for error messages and a source for `mmcore_image.ImagePreprocessor`.
Frame = tuple[str, ImageSource]

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_DIGITS = re.compile(r"(\d+)")


def sample_indices(total: int, wanted: int) -> list[int]:
    """Indices of `wanted` evenly spaced frames out of `total` (all of them if `total <= wanted`)."""
    if total <= wanted:
        return list(range(total))
    return [(2 * i + 1) * total // (2 * wanted) for i in range(wanted)]


def read_frames(source: Any, wanted: int, *, what: str, max_pixels: int) -> list[Frame]:
    """The sampled frames of `source`: a directory of images, an animated image, or `[T, H, W, 3]` pixels.

    `what` names the input in error messages. Raises `InvalidInputError` for URLs, missing paths,
    unreadable files, videos without frames and arrays of the wrong shape.
    """
    if isinstance(source, np.ndarray):
        return _array_frames(source, wanted, what)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise InvalidInputError(f"{what}: the video bytes are empty; pass the encoded file contents")
        return _animated_frames(io.BytesIO(bytes(source)), wanted, what, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.lower().startswith(("http://", "https://")):
            raise InvalidInputError(f"{what}: URLs are not fetched ({text[:80]!r}); download the video first")
        path = Path(text)
        if path.is_dir():
            return _directory_frames(path, wanted, what)
        if path.is_file():
            return _animated_frames(path, wanted, what, max_pixels)
        raise InvalidInputError(
            f"{what}: video path {text!r} does not exist; pass a directory of frame images or an animated GIF/WebP"
        )
    raise InvalidInputError(
        f"{what}: cannot read a video from {type(source).__name__}; pass a directory of frame images, "
        "an animated GIF/WebP (path or bytes) or a numpy array [T, H, W, 3]"
    )


def _array_frames(array: np.ndarray[Any, Any], wanted: int, what: str) -> list[Frame]:
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InvalidInputError(
            f"{what}: a video array must have shape [T, H, W, 3] (RGB frames), got {list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise InvalidInputError(f"{what}: the video array has no frames (T = 0)")
    return [(f"frame {i}", array[i]) for i in sample_indices(array.shape[0], wanted)]


def _directory_frames(folder: Path, wanted: int, what: str) -> list[Frame]:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise InvalidInputError(
            f"{what}: the directory {str(folder)!r} holds no frame images "
            f"({', '.join(sorted(FRAME_SUFFIXES))}); it is an empty video"
        )
    # Paths, not pixels: the image plugin decodes each sampled file with its own safety checks.
    return [(f"frame {i} ({files[i].name})", files[i]) for i in sample_indices(len(files), wanted)]


def _animated_frames(stream: io.BytesIO | Path, wanted: int, what: str, max_pixels: int) -> list[Frame]:
    try:
        with Image.open(stream, formats=ALLOWED_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"{what}: frames of {width}x{height} pixels exceed the max_pixels limit {max_pixels}"
                )
            total = int(getattr(image, "n_frames", 1))
            if total < 1 or width < 1 or height < 1:
                raise InvalidInputError(f"{what}: the video has no frames")
            frames: list[Frame] = []
            for index in sample_indices(total, wanted):
                image.seek(index)  # increasing indices: Pillow decodes forward only once
                frames.append((f"frame {index}", image.copy()))
            return frames
    except InvalidInputError:
        raise  # a ValueError too: keep it out of the clause below
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(f"{what}: the video frames are too large to decode safely ({exc})") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"{what}: not a readable video ({type(exc).__name__}: {exc}); pass a directory of frame images, "
            f"an animated GIF/WebP or a numpy array [T, H, W, 3]"
        ) from exc


def _natural_key(path: Path) -> list[Any]:
    """Sort key putting frame_2.png before frame_10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(path.name)]
