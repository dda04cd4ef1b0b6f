"""mmcore-image: the image modality (decoding, resizing, normalisation, `vision_encoder`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmcore import hookimpl
from mmcore.registry import ModalityRegistrar
from mmcore_image.decode import ALLOWED_FORMATS, decode_image, to_rgb
from mmcore_image.handler import VISION_ENCODER, ImageHandler
from mmcore_image.inputs import ImageInput, ImageSource
from mmcore_image.pan_and_scan import PanAndScan, pan_and_scan, pan_and_scan_grid
from mmcore_image.preprocess import ImagePreprocessor
from mmcore_image.settings import DEFAULT_MAX_PIXELS, PreprocessSettings, Resample, ResizeMode
from mmcore_image.tiles import ImageTiles, split_image, tile_grid

if TYPE_CHECKING:
    from mmcore.settings import SettingsRegistrar
    from mmcore_image.table import ImageSettings

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "VISION_ENCODER",
    "ImageHandler",
    "ImageInput",
    "ImageSettings",
    "ImagePreprocessor",
    "ImageSource",
    "ImageTiles",
    "PanAndScan",
    "PreprocessSettings",
    "Resample",
    "ResizeMode",
    "decode_image",
    "pan_and_scan",
    "pan_and_scan_grid",
    "split_image",
    "tile_grid",
    "to_rgb",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "ImageSettings":  # a pydantic model: imported on first use
        from mmcore_image.table import ImageSettings

        return ImageSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def mmcore_register_modalities(registry: ModalityRegistrar) -> None:
    """Register the image handler (`ImageInput`, `PIL.Image.Image`)."""
    registry.add(ImageHandler())


@hookimpl
def mmcore_register_settings(registry: SettingsRegistrar) -> None:
    """The `[image]` table's schema and validation."""
    from mmcore_image.table import ImageSettings

    registry.add("image", ImageSettings)
