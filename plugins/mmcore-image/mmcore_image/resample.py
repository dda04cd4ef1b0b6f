"""Pillow-exact resizing of a window of the output, with the native resampler when it was built.

`resize_window` returns exactly what `Image.resize` followed by a crop returns, but computes only
the kept window and can map it straight to float32 through a per-channel value table. The native
extension (`mmcore_image._resample`) is built when the plugin is installed with a C compiler; on
first use it is checked against the installed Pillow (including the order of Pillow's two passes,
which changed in Pillow 13), and if anything differs, or it was not built, Pillow does the work.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from mmcore_image.settings import Resample
from mmcore_image.values import apply_table

__all__ = ["FILTERS", "NativeResampler", "Window", "native_resampler", "resize_window"]

logger = logging.getLogger(__name__)

FILTERS: dict[Resample, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# Filters the native resampler implements (Pillow's nearest is a different algorithm).
_NATIVE_FILTERS: frozenset[Resample] = frozenset({"bilinear", "bicubic", "lanczos", "box", "hamming"})

Window = tuple[int, int, int, int]  # (y0, x0, h, w) of the resized image


def resize_window(
    pixels: np.ndarray[Any, Any],
    size: tuple[int, int],
    resample: Resample,
    window: Window | None = None,
    table: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """`window` of `pixels` [H, W, 3] uint8 resized to `size` (height, width) as Pillow resizes.

    Returns uint8 `[h, w, 3]`, or float32 `[3, h, w]` with each channel mapped through `table`
    (float32 `[3, 256]`) when one is given. `window` defaults to the whole resized image.
    """
    height, width = size
    y0, x0, h, w = window if window is not None else (0, 0, height, width)
    native = native_resampler() if resample in _NATIVE_FILTERS else None
    if native is not None:
        if table is None:
            out = np.empty((h, w, 3), dtype=np.uint8)  # [h, w, 3]
        else:
            out = np.empty((3, h, w), dtype=np.float32)  # [3, h, w]
        native.run(np.ascontiguousarray(pixels), size, resample, (y0, x0, h, w), out, table)
        return out
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), FILTERS[resample])
    kept = np.asarray(image)[y0 : y0 + h, x0 : x0 + w]  # [h, w, 3]
    if table is None:
        return np.ascontiguousarray(kept)
    return apply_table(table, kept)  # [3, h, w]


@dataclass(frozen=True)
class NativeResampler:
    """The native resampler and the pass order the installed Pillow uses."""

    module: ModuleType
    #: Pillow 13 resamples rows first when the height shrinks by more than twice the width does.
    pillow13_pass_order: bool

    def vertical_first(self, in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
        """Whether Pillow resamples rows before columns for this resize."""
        return self.pillow13_pass_order and (in_h - out_h) > 0 and (in_h - out_h) > (in_w - out_w) * 2

    def run(
        self,
        pixels: np.ndarray[Any, Any],
        size: tuple[int, int],
        resample: Resample,
        window: Window,
        out: np.ndarray[Any, Any],
        table: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Writes `window` of `pixels` (C-contiguous [H, W, 3] uint8) resized to `size` into `out`."""
        (in_h, in_w), (height, width), (y0, x0, h, w) = pixels.shape[:2], size, window
        self.module.resize_window(
            pixels,
            in_h,
            in_w,
            height,
            width,
            resample,
            y0,
            x0,
            h,
            w,
            out,
            table,
            vertical_first=self.vertical_first(in_h, in_w, height, width),
        )


@functools.cache
def native_resampler() -> NativeResampler | None:
    """The native resampler if it was built and reproduces the installed Pillow exactly, else None."""
    try:
        from mmcore_image import _resample
    except ImportError:
        logger.debug("mmcore-image: native resampler not built; resizing with Pillow")
        return None
    for pillow13_pass_order in (True, False):
        candidate = NativeResampler(_resample, pillow13_pass_order)
        if _agrees_with_pillow(candidate):
            return candidate
    logger.warning("mmcore-image: native resampler differs from this Pillow; resizing with Pillow")
    return None


# Probe resizes (in_h, in_w, out_h, out_w): the first is resampled rows-first by Pillow 13 and
# columns-first before it; the others cover up- and down-scaling in either order.
_PROBES: tuple[tuple[int, int, int, int], ...] = ((41, 13, 6, 11), (17, 29, 23, 9), (30, 30, 11, 47), (9, 40, 20, 16))


def _probe_pixels(height: int, width: int) -> np.ndarray[Any, Any]:
    """Pseudo-random RGB pixels `[H, W, 3]` from a 64-bit mixing hash (MurmurHash3's finaliser):
    numpy.random costs more to import than the whole probe takes."""
    x = np.arange(height * width * 3, dtype=np.uint64) + np.uint64(20261127)
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        x ^= x >> np.uint64(33)
        x *= np.uint64(multiplier)
    x ^= x >> np.uint64(33)
    return (x & np.uint64(255)).astype(np.uint8).reshape(height, width, 3)


def _agrees_with_pillow(native: NativeResampler) -> bool:
    """Whether `native` equals Pillow on small random images for every filter and probe size."""
    for in_h, in_w, out_h, out_w in _PROBES:
        pixels = _probe_pixels(in_h, in_w)  # [H, W, 3]
        for name in sorted(_NATIVE_FILTERS):
            expected = np.asarray(Image.fromarray(pixels, "RGB").resize((out_w, out_h), FILTERS[name]))
            out = np.empty((out_h, out_w, 3), dtype=np.uint8)
            native.run(pixels, (out_h, out_w), name, (0, 0, out_h, out_w), out)
            if not np.array_equal(out, expected):
                return False
    return True
