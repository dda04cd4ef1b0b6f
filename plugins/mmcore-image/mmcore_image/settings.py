"""Preprocessing settings: read from a modality-settings mapping and the encoder's input spec.

The `[image]` table's pydantic model (`ImageSettings`, `SETTING_NAMES`) lives in
`mmcore_image.table` and is imported from here on first use: preprocessing with no settings
imports no pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from mmcore.arrays import numpy_dtype
from mmcore.errors import ConfigError
from mmcore.program import TensorSpec

if TYPE_CHECKING:
    from mmcore_image.table import SETTING_NAMES, ImageSettings

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageSettings",
    "OUTPUT_DTYPES",
    "PreprocessSettings",
    "ResizeMode",
    "Resample",
    "SETTING_NAMES",
]

ResizeMode = Literal["stretch", "shortest_edge_crop", "longest_edge_pad"]
Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
Colour = tuple[int, int, int]

#: Decompression-bomb limit: images with more pixels are refused before decoding.
DEFAULT_MAX_PIXELS = 64_000_000
#: Encoder input dtypes this plugin produces (bfloat16 as `ml_dtypes.bfloat16`).
OUTPUT_DTYPES: tuple[str, ...] = ("uint8", "float32", "bfloat16", "float16")
_FLOAT32: np.dtype[Any] = np.dtype(np.float32)


def __getattr__(name: str) -> Any:
    if name in ("ImageSettings", "SETTING_NAMES"):
        from mmcore_image import table

        return getattr(table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _preprocess_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`ImageSettings.parse(settings).preprocess_values()`; an empty table needs no validation."""
    if not settings:
        return {"do_normalize": False}  # what the defaults give (tests/plugins check it)
    from mmcore_image.table import ImageSettings

    return ImageSettings.parse(settings).preprocess_values()


@dataclass(frozen=True)
class PreprocessSettings:
    """How images become encoder inputs.

    Fields:
        size: output (height, width); for dynamic-shaped encoders the declared upper bound.
        dtype: output numpy dtype (uint8 outputs are raw 0-255 pixels: no rescale, no normalisation);
            a dtype name or a torch dtype is converted.
        rank: 4 for `[1, 3, H, W]`, 3 for `[3, H, W]`.
        resize_mode: "stretch" (to `size`, aspect ignored), "shortest_edge_crop" (shortest edge to
            `shortest_edge`, then a centre crop to `size`, padded with `fill` where too small, as
            CLIP), "longest_edge_pad" (aspect kept, fitted inside `size`, centred on `fill`).
        resample: Pillow resampling filter.
        shortest_edge: target of the shortest edge in "shortest_edge_crop" (default: min of `size`).
        pre_resize_longest_edge: if set, first resize so the longest edge has this length, the
            other edge rounded up to even (as Idefics3 / SmolVLM do), then apply `resize_mode`.
        do_rescale, rescale_factor: multiply 0-255 pixels by `rescale_factor` (float outputs).
        do_normalize, image_mean, image_std: per-channel `(x - mean) / std` after rescaling.
        fill: RGB colour of padding, in 0-255 pixel space (before rescaling).
        background: RGB colour transparent pixels are composited over.
        max_pixels: images with more pixels are refused (decompression-bomb guard).
        jpeg_draft: let libjpeg decode JPEGs at 1/2, 1/4 or 1/8 scale when the output is that much
            smaller (faster, not bit-exact with a full decode).
        exif_orientation: rotate/flip as the EXIF Orientation tag says.
    """

    size: tuple[int, int]
    dtype: np.dtype[Any] = _FLOAT32
    rank: int = 4
    resize_mode: ResizeMode = "stretch"
    resample: Resample = "bicubic"
    shortest_edge: int | None = None
    pre_resize_longest_edge: int | None = None
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = False
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    fill: Colour = (0, 0, 0)
    background: Colour = (255, 255, 255)
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_draft: bool = False
    exif_orientation: bool = True

    def __post_init__(self) -> None:
        height, width = self.size
        if height < 1 or width < 1:
            raise ConfigError(f"image setting 'size' must be positive, got {self.size}")
        try:
            dtype = numpy_dtype(self.dtype)
        except TypeError as exc:
            raise ConfigError(f"image setting 'dtype' must be a dtype, got {self.dtype!r}") from exc
        if dtype.name not in OUTPUT_DTYPES:
            raise ConfigError(
                f"the vision encoder takes {dtype.name}; mmcore-image produces {', '.join(OUTPUT_DTYPES)}"
            )
        object.__setattr__(self, "dtype", dtype)
        if self.rank not in (3, 4):
            raise ConfigError(f"the vision encoder input must have rank 3 or 4, got rank {self.rank}")
        if self.resize_mode not in get_args(ResizeMode):
            raise ConfigError(
                f"image setting 'resize_mode' must be one of {get_args(ResizeMode)}, got {self.resize_mode!r}"
            )
        if self.resample not in get_args(Resample):
            raise ConfigError(f"image setting 'resample' must be one of {get_args(Resample)}, got {self.resample!r}")
        for name in ("shortest_edge", "pre_resize_longest_edge"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"image setting {name!r} must be a positive integer, got {value}")
        if self.do_normalize and (self.image_mean is None or self.image_std is None):
            raise ConfigError("image setting 'do_normalize' needs 'image_mean' and 'image_std'")
        if self.image_std is not None and any(s == 0 or not math.isfinite(s) for s in self.image_std):
            raise ConfigError(f"image setting 'image_std' must be finite and non-zero, got {self.image_std}")
        if self.max_pixels < 1:
            raise ConfigError(f"image setting 'max_pixels' must be positive, got {self.max_pixels}")

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the produced array."""
        chw = (3, *self.size)
        return (1, *chw) if self.rank == 4 else chw

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], encoder: TensorSpec) -> PreprocessSettings:
        """Settings from an `[image]` table (validated by `ImageSettings`), with size, dtype and rank
        from the encoder input.
        """
        values = _preprocess_values(settings)
        if encoder.rank not in (3, 4) or encoder.shape[-3] != 3 or (encoder.rank == 4 and encoder.shape[0] != 1):
            raise ConfigError(
                f"the vision encoder takes {encoder.describe()}; mmcore-image feeds RGB images as "
                "[3, H, W] or [1, 3, H, W]"
            )
        bound = (encoder.shape[-2], encoder.shape[-1])
        size = values.setdefault("size", bound)
        if size[0] > bound[0] or size[1] > bound[1]:
            raise ConfigError(
                f"image.size {size} exceeds the vision encoder's input {encoder.describe()}; use at most {bound}"
            )
        return cls(dtype=encoder.dtype, rank=encoder.rank, **values)
