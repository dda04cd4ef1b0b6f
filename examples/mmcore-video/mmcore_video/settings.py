"""Video settings: `frames`, plus the image plugin's preprocessing keys for each frame."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmcore_image import ImageSettings, PreprocessSettings
from pydantic import Field

from mmcore.program import TensorSpec
from mmcore.settings import validate_table

__all__ = ["DEFAULT_FRAMES", "SETTING_KEYS", "VideoSettings", "VideoTable"]

#: Frames sampled from each video unless the settings or the input say otherwise.
DEFAULT_FRAMES = 4


class VideoTable(ImageSettings):
    """The `[video]` table: `frames`, plus every `[image]` key for the frames' preprocessing.

    Registered with `mmcore_register_settings`, so a config's table is validated when it is loaded
    and `mmcore config schema` describes it.
    """

    frames: int = Field(default=DEFAULT_FRAMES, ge=1, description="frames sampled from each video")


#: Keys of the `video` settings table: `frames` and every mmcore-image preprocessing key.
SETTING_KEYS: frozenset[str] = frozenset(VideoTable.model_fields)


@dataclass(frozen=True)
class VideoSettings:
    """How many frames to sample, and how each frame becomes a `vision_encoder` input."""

    frames: int
    image: PreprocessSettings

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], encoder: TensorSpec) -> VideoSettings:
        """Settings from the `video` table and the vision encoder's input spec.

        The table is validated by `VideoTable` (`ConfigError` naming ``video.<key>``); the image keys
        are then read by mmcore-image against the encoder's input.
        """
        frames = validate_table(VideoTable, settings, "video").frames
        image_settings = {key: value for key, value in settings.items() if key != "frames"}
        return cls(frames=frames, image=PreprocessSettings.from_mapping(image_settings, encoder))
