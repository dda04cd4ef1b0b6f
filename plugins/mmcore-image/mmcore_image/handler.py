"""The image modality handler: images -> `vision_encoder` embeddings."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmcore.arrays import as_array
from mmcore.errors import InvalidInputError
from mmcore.inputs import EmbeddingsInput
from mmcore.program import Program
from mmcore.registry import PrefillContext, SettingsKey
from mmcore_image.inputs import ImageInput, describe_source
from mmcore_image.preprocess import ImagePreprocessor
from mmcore_image.settings import PreprocessSettings

__all__ = ["ImageHandler", "VISION_ENCODER"]

logger = logging.getLogger(__name__)

#: The program method that encodes images.
VISION_ENCODER = "vision_encoder"
_MAX_CACHED = 16


class ImageHandler:
    """Runs `ImageInput` and Pillow-image inputs through preprocessing and the `vision_encoder` method."""

    name = "image"
    input_types: tuple[type, ...] = (ImageInput, Image.Image)

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Program, dict[SettingsKey, ImagePreprocessor]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def settings_keys(self) -> frozenset[str]:
        """Keys accepted in the image settings table (config files, adapters)."""
        from mmcore_image.table import SETTING_NAMES

        return SETTING_NAMES

    def settings_for(self, ctx: PrefillContext) -> PreprocessSettings:
        """The preprocessing settings of `ctx`: its image settings plus the encoder's input spec."""
        return self.preprocessor_for(ctx).settings

    def preprocessor_for(self, ctx: PrefillContext) -> ImagePreprocessor:
        """A preprocessor for `ctx`'s program and settings (built once per program and settings)."""
        per_program = self._cache.setdefault(ctx.program, {})
        key = ctx.settings_key
        preprocessor = per_program.get(key)
        if preprocessor is None:
            spec = ctx.program.method_spec(VISION_ENCODER).input(0)
            preprocessor = ImagePreprocessor(PreprocessSettings.from_mapping(ctx.settings, spec))
            logger.debug("image preprocessing for %s: %s", ctx.program, preprocessor.settings)
            if len(per_program) >= _MAX_CACHED:
                per_program.clear()
            per_program[key] = preprocessor
        return preprocessor

    def preprocess(self, item: ImageInput | Image.Image, ctx: PrefillContext) -> np.ndarray[Any, Any]:
        """The `vision_encoder` input for `item`: a C-contiguous numpy array `[3, H, W]` or `[1, 3, H, W]`
        of the encoder's dtype."""
        source = item.source if isinstance(item, ImageInput) else item
        what = f"input {ctx.index} (image {describe_source(source)})"
        return self.preprocessor_for(ctx)(source, what=what)

    def prefill(self, prepared: np.ndarray[Any, Any], ctx: PrefillContext) -> EmbeddingsInput:
        """Embeddings `[1, N, D]` (a numpy array) from `vision_encoder` (a copy, safe to keep)."""
        outputs = ctx.program.method(VISION_ENCODER).execute([prepared], clone_outputs=True)
        return EmbeddingsInput(as_array(outputs[0]))  # [1, N, D]

    def from_content(self, part: Mapping[str, Any]) -> ImageInput | Image.Image:
        """The input of a chat content part ``{"type": "image", "image": <path|bytes|PIL|array>}``."""
        value = part.get("image", part.get("path", part.get("url")))
        if value is None:
            raise InvalidInputError("an image content part needs an 'image' value (a path, bytes, PIL image or array)")
        if isinstance(value, (ImageInput, Image.Image)):
            return value
        if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
            raise InvalidInputError(f"image {value!r}: URLs are not fetched; download the image and pass its path")
        return ImageInput(Path(value) if isinstance(value, str) else value)

    def parse_cli(self, value: str) -> ImageInput:
        """`--image PATH` on the command line (local files only)."""
        if value.lower().startswith(("http://", "https://")):
            raise InvalidInputError(f"--image {value!r}: URLs are not fetched; download the image and pass its path")
        return ImageInput(Path(value))

    def __repr__(self) -> str:
        return "ImageHandler()"
