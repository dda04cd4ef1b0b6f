"""Pixel values: 0-255 RGB pixels -> the encoder's dtype, rescaled and normalised as configured.

Float outputs are computed the way Hugging Face's slow image processors compute them (rescale in
float64, then float32; normalise in float32), through a 256-entry table per channel, so the
results are bit-identical.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from mmcore_image.settings import PreprocessSettings

__all__ = ["apply_table", "table_for", "to_encoder_input", "value_table"]


def table_for(s: PreprocessSettings) -> np.ndarray[Any, Any] | None:
    """The per-channel value table for `s`'s float outputs (float32 `[3, 256]`); None for uint8 outputs."""
    if s.dtype == np.uint8:
        return None
    return value_table(
        s.do_rescale,
        s.rescale_factor,
        s.image_mean if s.do_normalize else None,
        s.image_std if s.do_normalize else None,
    )


def to_encoder_input(values: np.ndarray[Any, Any], s: PreprocessSettings) -> np.ndarray[Any, Any]:
    """The encoder input `[3, H, W]` or `[1, 3, H, W]` of `s.dtype`, a C-contiguous numpy array.

    `values` is what `fit` returns for `table_for(s)`: uint8 pixels `[H, W, 3]` for uint8 outputs,
    float32 values `[3, H, W]` otherwise.
    """
    if s.dtype == np.uint8:
        out = np.ascontiguousarray(values.transpose(2, 0, 1))  # [3, H, W] uint8
    else:
        out = np.ascontiguousarray(values, dtype=s.dtype)  # [3, H, W]; bfloat16 rounds to nearest even
    return out[None] if s.rank == 4 else out  # [1, 3, H, W] or [3, H, W]


def apply_table(table: np.ndarray[Any, Any], pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each channel of `pixels` [H, W, 3] uint8 mapped through its row of `table` [3, 256]: [3, H, W]."""
    return np.stack([table[c][pixels[:, :, c]] for c in range(3)])  # [3, H, W]


@functools.lru_cache(maxsize=64)
def value_table(
    do_rescale: bool,
    rescale_factor: float,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
) -> np.ndarray[Any, Any]:
    """Output value of each pixel value 0-255 per channel: `[3, 256]` float32 (read-only)."""
    levels = np.arange(256, dtype=np.float64)
    base = (levels * rescale_factor).astype(np.float32) if do_rescale else levels.astype(np.float32)
    table = np.repeat(base[None, :], 3, axis=0)  # [3, 256]
    if mean is not None and std is not None:
        table = (table - np.asarray(mean, dtype=np.float32)[:, None]) / np.asarray(std, dtype=np.float32)[:, None]
    table.setflags(write=False)
    return table
