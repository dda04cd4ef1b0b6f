"""Geometry: resizing (with Pillow, so results equal Pillow's), centre cropping and padding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from mmcore_image.settings import PreprocessSettings, Resample

__all__ = ["fit", "first_resize_size", "longest_edge_size", "shortest_edge_size", "place_centred"]

_FILTERS: dict[Resample, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# Idefics3 / SmolVLM bound the pre-resize to this many pixels per edge.
_MAX_EDGE = 4096


def fit(image: Image.Image, s: PreprocessSettings) -> np.ndarray[Any, Any]:
    """RGB pixels of exactly `s.size` after the configured resize, crop and padding."""
    resample = _FILTERS[s.resample]
    if s.pre_resize_longest_edge is not None:
        height, width = longest_edge_size(image.height, image.width, s.pre_resize_longest_edge)
        image = image.resize((width, height), resample)
    height, width = _mode_size(image.height, image.width, s)
    if image.size != (width, height):
        image = image.resize((width, height), resample)
    pixels = np.asarray(image)  # [h, w, 3] uint8
    if pixels.shape[:2] == s.size:
        return pixels
    return place_centred(pixels, s.size, s.fill)


def first_resize_size(width: int, height: int, s: PreprocessSettings) -> tuple[int, int]:
    """(width, height) of the first resize `fit` does on a `width` x `height` image."""
    if s.pre_resize_longest_edge is not None:
        h, w = longest_edge_size(height, width, s.pre_resize_longest_edge)
    else:
        h, w = _mode_size(height, width, s)
    return (w, h)


def shortest_edge_size(height: int, width: int, shortest: int) -> tuple[int, int]:
    """(height, width) with the shortest edge `shortest` and the other truncated to keep the aspect (as CLIP)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest * long / short)
    return (new_long, shortest) if width <= height else (shortest, new_long)


def longest_edge_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """(height, width) with the longest edge `longest`, the other rounded up to even (as Idefics3 / SmolVLM)."""
    aspect = width / height
    if width >= height:
        width = longest
        height = int(width / aspect)
        height += height % 2
    else:
        height = longest
        width = int(height * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    aspect = width / height
    if width >= height and width > _MAX_EDGE:
        width, height = _MAX_EDGE, int(_MAX_EDGE / aspect)
    elif height > width and height > _MAX_EDGE:
        height, width = _MAX_EDGE, int(_MAX_EDGE * aspect)
    return max(height, 1), max(width, 1)


def place_centred(
    pixels: np.ndarray[Any, Any], size: tuple[int, int], fill: tuple[int, int, int]
) -> np.ndarray[Any, Any]:
    """`pixels` [h, w, 3] centre-cropped and/or padded with `fill` to `size` (Hugging Face's centre crop rule)."""
    out = np.empty((*size, 3), dtype=np.uint8)  # [H, W, 3]
    out[:] = np.asarray(fill, dtype=np.uint8)
    (src_y, dst_y, rows), (src_x, dst_x, cols) = (
        _span(pixels.shape[0], size[0]),
        _span(pixels.shape[1], size[1]),
    )
    out[dst_y : dst_y + rows, dst_x : dst_x + cols] = pixels[src_y : src_y + rows, src_x : src_x + cols]
    return out


def _span(have: int, want: int) -> tuple[int, int, int]:
    """(source offset, target offset, length) along one axis."""
    if have >= want:
        return ((have - want) // 2, 0, want)
    return (0, math.ceil((want - have) / 2), have)


def _mode_size(height: int, width: int, s: PreprocessSettings) -> tuple[int, int]:
    if s.resize_mode == "stretch":
        return s.size
    if s.resize_mode == "shortest_edge_crop":
        return shortest_edge_size(height, width, s.shortest_edge or min(s.size))
    scale = min(s.height / height, s.width / width)
    return (
        min(s.height, max(1, round(height * scale))),
        min(s.width, max(1, round(width * scale))),
    )
