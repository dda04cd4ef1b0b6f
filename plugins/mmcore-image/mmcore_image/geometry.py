"""Geometry: resizing (bit-identical to Pillow's), centre cropping and padding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mmcore_image.resample import Window, resize_window
from mmcore_image.settings import PreprocessSettings
from mmcore_image.values import apply_table

__all__ = ["Placement", "fit", "first_resize_size", "longest_edge_size", "placement", "shortest_edge_size"]

# Idefics3 / SmolVLM bound the pre-resize to this many pixels per edge.
_MAX_EDGE = 4096


@dataclass(frozen=True)
class Placement:
    """Where the last resize's output lands in the `size` output: resize, keep a window, pad."""

    resized: tuple[int, int]  # (height, width) of the last resize
    window: Window  # (y0, x0, h, w) kept from the resized image
    offset: tuple[int, int]  # (y, x) of the window in the output

    def fills(self, size: tuple[int, int]) -> bool:
        """Whether the window covers the whole output (no padding)."""
        return (self.window[2], self.window[3]) == size


def placement(height: int, width: int, s: PreprocessSettings) -> Placement:
    """How a `height` x `width` image (after any pre-resize) is resized, cropped and padded to `s.size`."""
    resized = _mode_size(height, width, s)
    (src_y, dst_y, rows), (src_x, dst_x, cols) = _span(resized[0], s.size[0]), _span(resized[1], s.size[1])
    return Placement(resized, (src_y, src_x, rows, cols), (dst_y, dst_x))


def fit(
    image: Image.Image | np.ndarray[Any, Any], s: PreprocessSettings, table: np.ndarray[Any, Any] | None = None
) -> np.ndarray[Any, Any]:
    """RGB pixels `[H, W, 3]` uint8 of exactly `s.size` after the configured resize, crop and padding,
    from an RGB image or its pixels `[h, w, 3]` uint8.

    With `table` (float32 `[3, 256]`), returns each channel mapped through it instead: float32
    `[3, H, W]`.
    """
    pixels = image if isinstance(image, np.ndarray) else np.asarray(image)  # [h, w, 3] uint8
    if s.pre_resize_longest_edge is not None:
        size = longest_edge_size(pixels.shape[0], pixels.shape[1], s.pre_resize_longest_edge)
        if size != pixels.shape[:2]:
            pixels = resize_window(pixels, size, s.resample)
    place = placement(pixels.shape[0], pixels.shape[1], s)
    if place.fills(s.size):
        return resize_window(pixels, place.resized, s.resample, place.window, table)
    out = np.empty((*s.size, 3), dtype=np.uint8)  # [H, W, 3]
    out[:] = np.asarray(s.fill, dtype=np.uint8)
    (y, x), (_, _, rows, cols) = place.offset, place.window
    out[y : y + rows, x : x + cols] = resize_window(pixels, place.resized, s.resample, place.window)
    if table is None:
        return out
    return apply_table(table, out)  # [3, H, W]


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
