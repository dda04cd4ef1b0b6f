"""The image pipeline: decode -> RGB -> resize/crop/pad -> encoder input (a numpy array)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmcore_image.decode import decode_image, rgb_pixels
from mmcore_image.geometry import first_resize_size, fit
from mmcore_image.inputs import ImageSource, describe_source
from mmcore_image.settings import PreprocessSettings
from mmcore_image.values import table_for, to_encoder_input

__all__ = ["ImagePreprocessor"]


class ImagePreprocessor:
    """Turns image sources into vision-encoder inputs (numpy arrays) for fixed settings."""

    def __init__(self, settings: PreprocessSettings) -> None:
        self.settings = settings

    def __call__(self, source: ImageSource, *, what: str | None = None) -> np.ndarray[Any, Any]:
        """The encoder input `[3, H, W]` or `[1, 3, H, W]` for `source`: C-contiguous, of the encoder's dtype.

        `what` names the input in error messages (default: a description of `source`).
        Raises `mmcore.errors.InvalidInputError` when the source cannot be used.
        """
        s = self.settings
        label = what or f"image {describe_source(source)}"
        pixels = rgb_pixels(source, what=label, max_pixels=s.max_pixels)  # tiles and crops skip Pillow
        image = (
            pixels
            if pixels is not None
            else decode_image(
                source,
                what=label,
                max_pixels=s.max_pixels,
                background=s.background,
                exif_orientation=s.exif_orientation,
                draft_size=(lambda w, h: first_resize_size(w, h, s)) if s.jpeg_draft else None,
            )
        )
        return to_encoder_input(fit(image, s, table_for(s)), s)  # [1, 3, H, W] or [3, H, W]

    def __repr__(self) -> str:
        return f"ImagePreprocessor({self.settings!r})"
