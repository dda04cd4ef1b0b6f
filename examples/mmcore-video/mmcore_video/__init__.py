"""mmcore-video: an example third-party plugin adding a `video` modality to mmcore.

A video (a directory of frame images, an animated GIF/WebP, or a numpy array `[T, H, W, 3]`) is
sampled to `frames` evenly spaced frames; each goes through mmcore-image's preprocessing and the
program's `vision_encoder`, and the frames' embeddings are prefilled as one `[1, N * rows, D]`
segment.
"""

from __future__ import annotations

from mmcore import hookimpl
from mmcore.registry import ModalityRegistrar
from mmcore.settings import SettingsRegistrar
from mmcore_video.frames import read_frames, sample_indices
from mmcore_video.handler import VideoHandler
from mmcore_video.inputs import VideoInput, VideoSource
from mmcore_video.settings import DEFAULT_FRAMES, SETTING_KEYS, VideoSettings, VideoTable

__all__ = [
    "DEFAULT_FRAMES",
    "SETTING_KEYS",
    "VideoHandler",
    "VideoInput",
    "VideoSettings",
    "VideoTable",
    "VideoSource",
    "read_frames",
    "sample_indices",
]

__version__ = "0.1.0"


@hookimpl
def mmcore_register_modalities(registry: ModalityRegistrar) -> None:
    """Register the video handler (`VideoInput`)."""
    registry.add(VideoHandler())


@hookimpl
def mmcore_register_settings(registry: SettingsRegistrar) -> None:
    """The `[video]` table's schema and validation."""
    registry.add("video", VideoTable)
