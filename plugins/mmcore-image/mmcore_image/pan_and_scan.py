"""Gemma 3 pan-and-scan: an image with an exaggerated aspect ratio -> the image plus equal crops."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmcore_image.decode import decode_image
from mmcore_image.settings import DEFAULT_MAX_PIXELS

__all__ = ["PanAndScan", "pan_and_scan", "pan_and_scan_grid"]


@dataclass(frozen=True)
class PanAndScan:
    """``Gemma3ImageProcessor``'s pan-and-scan settings (``pan_and_scan_*`` in its processor files)."""

    min_crop_size: int = 256
    max_num_crops: int = 4
    min_ratio_to_activate: float = 1.2

    def __post_init__(self) -> None:
        if self.min_crop_size < 1 or self.max_num_crops < 2 or self.min_ratio_to_activate <= 0:
            raise ValueError(
                f"pan-and-scan settings {self} are out of range: min_crop_size >= 1, max_num_crops >= 2, "
                "min_ratio_to_activate > 0"
            )


def pan_and_scan_grid(height: int, width: int, settings: PanAndScan) -> tuple[int, int]:
    """(rows, cols) of the crops a ``height`` x ``width`` image gets ((0, 0): none, only the image)."""
    if width >= height:
        if width / height < settings.min_ratio_to_activate:
            return 0, 0
        cols = min(math.floor(width / settings.min_crop_size), math.floor(width / height + 0.5))
        rows, cols = 1, min(settings.max_num_crops, max(2, cols))
    else:
        if height / width < settings.min_ratio_to_activate:
            return 0, 0
        rows = min(math.floor(height / settings.min_crop_size), math.floor(height / width + 0.5))
        rows, cols = min(settings.max_num_crops, max(2, rows)), 1
    if min(math.ceil(width / cols), math.ceil(height / rows)) < settings.min_crop_size:
        return 0, 0
    return rows, cols


def pan_and_scan(
    source: Any, settings: PanAndScan, *, what: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray[Any, Any], ...]:
    """The decoded image followed by its pan-and-scan crops, RGB uint8 ``[h, w, 3]`` each, row-major.

    Crops are ``ceil(width / cols)`` x ``ceil(height / rows)`` slices of the image at its own size
    (the last ones cut by the border), as ``Gemma3ImageProcessor(do_pan_and_scan=True)`` makes them;
    each is then resized like any image.
    """
    image = decode_image(source, what=what, max_pixels=max_pixels, background=(255, 255, 255))
    pixels = np.asarray(image)  # [h, w, 3] uint8
    height, width = pixels.shape[:2]
    rows, cols = pan_and_scan_grid(height, width, settings)
    if not rows:
        return (pixels,)
    crop_h, crop_w = math.ceil(height / rows), math.ceil(width / cols)
    crops = [
        np.ascontiguousarray(pixels[r * crop_h : (r + 1) * crop_h, c * crop_w : (c + 1) * crop_w])  # [ch, cw, 3]
        for r in range(rows)
        for c in range(cols)
    ]
    return (pixels, *crops)
