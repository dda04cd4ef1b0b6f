"""Decoding: any accepted image source -> an RGB Pillow image, with the safety checks.

Alpha policy: transparent pixels are composited over a background colour (white by default), as
Idefics3 / SmolVLM do; alpha is never dropped silently (Pillow's plain RGBA -> RGB conversion would
show whatever colour hides under transparent pixels).
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from mmcore.arrays import as_array, is_bfloat16, is_tensor
from mmcore.errors import InvalidInputError

__all__ = ["ALLOWED_FORMATS", "decode_image", "to_rgb"]

#: Encoded formats Pillow may open; others (EPS needs Ghostscript, ...) are refused.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF", "PPM", "TGA", "ICO")

# The Pillow plugin module of each allowed format (PIL.<name>ImagePlugin).
_FORMAT_PLUGINS = {
    "JPEG": "Jpeg", "PNG": "Png", "WEBP": "WebP", "AVIF": "Avif", "GIF": "Gif", "BMP": "Bmp", "TIFF": "Tiff",
    "PPM": "Ppm", "TGA": "Tga", "ICO": "Ico",
}  # fmt: skip
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Float pixels this far outside [0, 1] (rounding noise) are clipped rather than refused.
_FLOAT_SLACK = 1e-6

#: Maps the (width, height) an image will have after EXIF orientation to the smallest
#: (width, height) the resize needs, for JPEG draft decoding.
DraftSize = Callable[[int, int], tuple[int, int]]


def decode_image(
    source: Any,
    *,
    what: str,
    max_pixels: int,
    background: tuple[int, int, int],
    exif_orientation: bool = True,
    draft_size: DraftSize | None = None,
) -> Image.Image:
    """An RGB image from a path, bytes, binary file object, Pillow image, numpy array or tensor.

    `what` names the input in error messages ("input 2 (ImageInput('cat.jpg'))").
    Raises `InvalidInputError` for URLs, missing files, undecodable or truncated data, images
    above `max_pixels`, empty images and unsupported array dtypes or shapes.
    """
    if isinstance(source, Image.Image):
        image = source
        _check_pixels(image.size, max_pixels, what)
    elif isinstance(source, np.ndarray) or is_tensor(source):
        image = _from_array(source, what, max_pixels)
    else:
        image = _open(source, what, max_pixels, draft_size, exif_orientation)
    if exif_orientation:
        image = _oriented(image, what)
    return to_rgb(image, background)


def rgb_pixels(source: Any, *, what: str, max_pixels: int) -> np.ndarray[Any, Any] | None:
    """`source` itself when it already is RGB pixels (a uint8 numpy array `[H, W, 3]`, as tiles and
    crops are), checked like a decoded image; None for anything `decode_image` must convert."""
    if not (isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3):
        return None
    _check_pixels((source.shape[1], source.shape[0]), max_pixels, what)
    return np.ascontiguousarray(source)


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """`image` in RGB mode.

    L, 1, CMYK, YCbCr, P: Pillow's conversion. Alpha (RGBA, LA, PA, P with transparency):
    composited over `background`. I;16 / I: 16-bit samples scaled to 0-255 (`round(v / 257)`,
    clipped). F: floats in [0, 1] scaled to 0-255 (`round(v * 255)`, clipped).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode.startswith("I;16"):
        values = np.asarray(image).astype(np.float64) / 257.0  # [H, W]
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        values = np.asarray(image).astype(np.float64) * 255.0  # [H, W]
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode in _ALPHA_MODES:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image).convert("RGB")
    return image.convert("RGB")


@functools.cache
def _register_allowed_formats() -> None:
    """Import the Pillow plugins of `ALLOWED_FORMATS` only. `Image.open(formats=...)` imports all of
    Pillow's ~45 plugins (`Image.init()`) the first time it tries a format not registered yet,
    which costs more than decoding a small image."""
    for name in ALLOWED_FORMATS:
        try:
            importlib.import_module(f"PIL.{_FORMAT_PLUGINS[name]}ImagePlugin")
        except ImportError:  # this Pillow lacks the format: Image.open falls back to Image.init()
            continue


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _reason(exc: BaseException) -> str:
    """Pillow's error as `Type: message`, without the object addresses its messages carry
    (`cannot identify image file <_io.BytesIO object at 0x7f...>`): the same bad input gives the
    same message in every process and every run."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return f"{type(exc).__name__}: no image format Pillow knows matches the data"
    return f"{type(exc).__name__}: {_OBJECT_REPR.sub('the data', str(exc))}"


def _open(source: Any, what: str, max_pixels: int, draft_size: DraftSize | None, exif_orientation: bool) -> Image.Image:
    stream = _stream(source, what)
    _register_allowed_formats()
    try:
        image = Image.open(stream, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(
            f"{what}: the image is too large to decode safely ({_OBJECT_REPR.sub('the data', str(exc))}); "
            "pass a smaller image"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"{what}: not a readable image ({_reason(exc)}); expected an encoded image in one of "
            f"{', '.join(ALLOWED_FORMATS)}"
        ) from exc
    _check_pixels(image.size, max_pixels, what)
    if draft_size is not None and image.format in ("JPEG", "MPO"):
        width, height = image.size
        transposed = exif_orientation and image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS
        need = draft_size(height, width) if transposed else draft_size(width, height)
        need = (need[1], need[0]) if transposed else need
        image.draft(None, need)
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"{what}: the {image.format or 'image'} data is damaged or truncated ({_reason(exc)}); "
            "re-export or re-download the file"
        ) from exc
    return image


def _stream(source: Any, what: str) -> io.BytesIO | Path:
    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{what}: URLs are not fetched ({source[:80]!r}); download the image first and pass its local path"
        )
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            hint = " (URLs are not fetched; download the image first)" if str(path).lower().startswith("http") else ""
            state = "is not a file" if path.exists() else "does not exist"
            raise InvalidInputError(f"{what}: image path {str(path)!r} {state}{hint}; pass an existing image file")
        return path
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidInputError(f"{what}: the image bytes are empty; pass the encoded file contents")
        return io.BytesIO(bytes(source))
    read = getattr(source, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInputError(
                f"{what}: the file object returned {type(data).__name__}, not bytes; "
                "open the file in binary mode ('rb')"
            )
        if not data:
            raise InvalidInputError(f"{what}: the file object is empty (already read?); pass it at position 0")
        return io.BytesIO(bytes(data))
    raise InvalidInputError(
        f"{what}: cannot read an image from {type(source).__name__}; pass a path, bytes, a binary file object, "
        "a PIL image, a numpy array or a torch tensor"
    )


def _from_array(source: Any, what: str, max_pixels: int) -> Image.Image:
    from_tensor = not isinstance(source, np.ndarray)  # torch tensors are CHW by convention
    array = as_array(source)
    if is_bfloat16(array.dtype) or array.dtype == np.float16:
        array = array.astype(np.float32)
    shape = list(array.shape)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]  # [H, W, 1]
    if array.ndim != 3:
        raise InvalidInputError(
            f"{what}: an image array must be [H, W], [H, W, C] or [C, H, W] (C = 1, 3 or 4), got shape {shape}"
        )
    array = _channels_last(array, prefer_first=from_tensor, what=what, shape=shape)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"{what}: the image is empty (shape {shape}); pass an image with pixels")
    _check_pixels((array.shape[1], array.shape[0]), max_pixels, what)
    pixels = _as_uint8(array, what)  # [H, W, C]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)


def _channels_last(
    array: np.ndarray[Any, Any], *, prefer_first: bool, what: str, shape: list[int]
) -> np.ndarray[Any, Any]:
    first, last = array.shape[0] in (1, 3, 4), array.shape[2] in (1, 3, 4)
    if first and (prefer_first or not last):
        return np.moveaxis(array, 0, -1)
    if last:
        return array
    raise InvalidInputError(
        f"{what}: cannot find the channel axis of shape {shape}; expected 1, 3 or 4 channels first (CHW) or last (HWC)"
    )


def _as_uint8(array: np.ndarray[Any, Any], what: str) -> np.ndarray[Any, Any]:
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all() or values.min() < -_FLOAT_SLACK or values.max() > 1.0 + _FLOAT_SLACK:
            raise InvalidInputError(
                f"{what}: float pixels must be finite and in [0, 1], got range [{values.min()}, {values.max()}]; "
                "divide 0-255 data by 255 or pass uint8"
            )
        return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    raise InvalidInputError(f"{what}: unsupported pixel dtype {array.dtype}; pass uint8 (0-255) or float (0-1) pixels")


def _check_pixels(size: tuple[int, int], max_pixels: int, what: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{what}: the image is empty ({width}x{height}); pass an image with pixels")
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{what}: the image has {width}x{height} = {width * height} pixels, above the limit of {max_pixels} "
            "(decompression-bomb guard); downscale it first or raise the 'max_pixels' image setting"
        )


def _oriented(image: Image.Image, what: str) -> Image.Image:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except _DECODE_ERRORS:
        return image  # unreadable EXIF: keep the stored orientation
    if orientation in (None, 1):
        return image
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(f"{what}: cannot apply the EXIF orientation ({_reason(exc)})") from exc
