"""Video settings: `frames`, plus the image plugin's preprocessing keys for each frame."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmcore_image import PreprocessSettings
from mmcore_image.settings import SETTING_NAMES as IMAGE_SETTING_NAMES

from mmcore.errors import ConfigError
from mmcore.program import TensorSpec

__all__ = ["DEFAULT_FRAMES", "SETTING_KEYS", "VideoSettings", "check_frames"]

#: Frames sampled from each video unless the settings or the input say otherwise.
DEFAULT_FRAMES = 4
#: Keys of the `video` settings table: `frames` and every mmcore-image preprocessing key.
SETTING_KEYS: frozenset[str] = frozenset({"frames"}) | IMAGE_SETTING_NAMES


def check_frames(value: Any) -> int:
    """`value` as a frame count; `ConfigError` unless it is a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"video setting 'frames' must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class VideoSettings:
    """How many frames to sample, and how each frame becomes a `vision_encoder` input."""

    frames: int
    image: PreprocessSettings

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], encoder: TensorSpec) -> VideoSettings:
        """Settings from the `video` table and the vision encoder's input spec.

        Unknown keys raise `ConfigError`; the image keys are validated by mmcore-image.
        """
        unknown = sorted(set(settings) - SETTING_KEYS)
        if unknown:
            raise ConfigError(f"unknown video setting(s) {unknown}; known settings: {sorted(SETTING_KEYS)}")
        frames = check_frames(settings.get("frames", DEFAULT_FRAMES))
        image_settings = {key: value for key, value in settings.items() if key != "frames"}
        return cls(frames=frames, image=PreprocessSettings.from_mapping(image_settings, encoder))
