"""Idefics3 / SmolVLM image splitting: an image -> row-major square tiles plus the global image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmcore_image.decode import decode_image
from mmcore_image.geometry import longest_edge_size
from mmcore_image.resample import resize_window
from mmcore_image.settings import DEFAULT_MAX_PIXELS, Resample

__all__ = ["ImageTiles", "split_image", "tile_grid"]


@dataclass(frozen=True)
class ImageTiles:
    """An image split as ``Idefics3ImageProcessor(do_image_splitting=True)`` splits it.

    Fields:
        tiles: RGB uint8 ``[S, S, 3]`` arrays: ``rows x cols`` crops in row-major order, then the
            global image (the only one when ``rows == cols == 0``).
        rows, cols: the crop grid (0, 0 when the image was not split).
    """

    tiles: tuple[np.ndarray[Any, Any], ...]
    rows: int
    cols: int


def _grid_size(height: int, width: int, tile: int) -> tuple[int, int]:
    """(height, width) rounded up to multiples of ``tile``, the aspect kept (``resize_for_vision_encoder``)."""
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


def tile_grid(height: int, width: int, *, longest_edge: int, tile: int) -> tuple[int, int]:
    """(rows, cols) of crops a ``height`` x ``width`` image splits into ((0, 0): not split)."""
    resized = longest_edge_size(height, width, longest_edge)
    h, w = _grid_size(*resized, tile)
    return (h // tile, w // tile) if h > tile or w > tile else (0, 0)


def split_image(
    source: Any,
    *,
    longest_edge: int,
    tile: int,
    resample: Resample = "lanczos",
    what: str = "image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageTiles:
    """Split ``source`` (path, bytes, Pillow image, array) as the Idefics3 / SmolVLM processor does.

    Resize the longest edge to ``longest_edge`` (the other rounded up to even), resize both edges up
    to multiples of ``tile``, cut ``tile``-sized crops row by row, and add the resized image shrunk
    to ``tile`` x ``tile`` as the global image. Pixels equal the processor's before rescaling.
    """
    image = decode_image(source, what=what, max_pixels=max_pixels, background=(255, 255, 255))
    pixels = np.asarray(image)  # [h, w, 3] uint8
    resized = longest_edge_size(image.height, image.width, longest_edge)
    if resized != pixels.shape[:2]:
        pixels = resize_window(pixels, resized, resample)
    grid = _grid_size(*resized, tile)
    if grid != pixels.shape[:2]:
        pixels = resize_window(pixels, grid, resample)  # [H, W, 3], multiples of tile
    height, width = grid
    if height <= tile and width <= tile:
        return ImageTiles((pixels,), 0, 0)
    rows, cols = height // tile, width // tile
    crops = [
        np.ascontiguousarray(pixels[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile])  # [S, S, 3]
        for r in range(rows)
        for c in range(cols)
    ]
    global_image = resize_window(pixels, (tile, tile), resample)  # [S, S, 3]
    return ImageTiles((*crops, global_image), rows, cols)
