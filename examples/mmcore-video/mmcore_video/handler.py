"""The video modality handler: sampled frames -> `vision_encoder` embeddings, concatenated."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mmcore_image import VISION_ENCODER, ImagePreprocessor

from mmcore.errors import ConfigError, InvalidInputError, ProgramError
from mmcore.inputs import EmbeddingsInput
from mmcore.program import Program
from mmcore.registry import PrefillContext, SettingsKey
from mmcore_video.frames import read_frames
from mmcore_video.inputs import VideoInput, describe_video
from mmcore_video.settings import VideoSettings

__all__ = ["VideoHandler"]

_MAX_CACHED = 16


class VideoHandler:
    """Samples frames from `VideoInput`s and runs each through the program's `vision_encoder`.

    `preprocess` returns the sampled frames' encoder inputs stacked into one numpy array
    `[N, *encoder_input_shape]`, so the core's encoder cache can key a whole video by its pixels;
    `prefill` encodes frame by frame and concatenates the embeddings into `[1, N * rows, D]`.
    """

    name = "video"
    input_types: tuple[type, ...] = (VideoInput,)

    def __init__(self) -> None:
        # Settings are parsed once per (program, settings), never per input.
        self._cache: weakref.WeakKeyDictionary[Program, dict[SettingsKey, tuple[VideoSettings, ImagePreprocessor]]] = (
            weakref.WeakKeyDictionary()
        )

    def settings_for(self, ctx: PrefillContext) -> VideoSettings:
        """The video settings of `ctx`: its `video` table plus the vision encoder's input spec."""
        return self._prepared(ctx)[0]

    def preprocess(self, item: VideoInput, ctx: PrefillContext) -> npt.NDArray[Any]:
        """The sampled frames as `vision_encoder` inputs, stacked: `[N, *encoder_input_shape]`."""
        what = f"input {ctx.index} (video {describe_video(item.source)})"
        settings, preprocessor = self._prepared(ctx)
        wanted = settings.frames if item.frames is None else item.frames
        frames = read_frames(item.source, wanted, what=what, max_pixels=settings.image.max_pixels)
        return np.stack([preprocessor(source, what=f"{what} {label}") for label, source in frames])

    def prefill(self, prepared: npt.NDArray[Any], ctx: PrefillContext) -> EmbeddingsInput:
        """Each frame through `vision_encoder`, the embeddings concatenated: `[1, N * rows, D]`."""
        encoder = ctx.program.method(VISION_ENCODER)
        rows: list[npt.NDArray[Any]] = []
        for frame in prepared:  # [*encoder_input_shape]
            # clone_outputs=True: without it the output aliases the method's memory, which the next
            # frame's call overwrites.
            out = encoder.execute([frame], clone_outputs=True)[0]
            if not isinstance(out, np.ndarray) or out.ndim != 3 or out.shape[0] != 1:
                got = list(out.shape) if isinstance(out, np.ndarray) else type(out).__name__
                raise ProgramError(
                    f"input {ctx.index}: '{VISION_ENCODER}' returned {got} for a frame; "
                    "mmcore-video expects [1, rows, D]"
                )
            rows.append(out)
        return EmbeddingsInput(np.concatenate(rows, axis=1))  # [1, N * rows, D]

    def from_content(self, part: Mapping[str, Any]) -> VideoInput:
        """The input of a chat content part ``{"type": "video", "video": <path|bytes|array>, "frames": N}``."""
        value = part.get("video", part.get("path"))
        frames = part.get("frames")
        if value is None:
            raise InvalidInputError(
                "a video content part needs a 'video' value (a directory, an animated GIF/WebP path or bytes, "
                "or a numpy array [T, H, W, 3])"
            )
        if isinstance(value, VideoInput):
            return value if frames is None else VideoInput(value.source, frames)
        if isinstance(value, str):
            if value.lower().startswith(("http://", "https://")):
                raise InvalidInputError(f"video {value!r}: URLs are not fetched; download the video and pass its path")
            value = Path(value)
        return VideoInput(value, frames)

    def parse_cli(self, value: str) -> VideoInput:
        """`--video PATH` on the command line: a directory of frames or an animated GIF/WebP."""
        if value.lower().startswith(("http://", "https://")):
            raise InvalidInputError(f"--video {value!r}: URLs are not fetched; download the video and pass its path")
        return VideoInput(Path(value))

    def _prepared(self, ctx: PrefillContext) -> tuple[VideoSettings, ImagePreprocessor]:
        per_program = self._cache.setdefault(ctx.program, {})
        key = ctx.settings_key
        found = per_program.get(key)
        if found is None:
            spec = ctx.program.method_spec(VISION_ENCODER).input(0)
            try:
                settings = VideoSettings.from_mapping(ctx.settings, spec)
            except ConfigError as exc:
                raise ConfigError(f"[video] {exc}") from None
            found = (settings, ImagePreprocessor(settings.image))
            if len(per_program) >= _MAX_CACHED:
                per_program.clear()
            per_program[key] = found
        return found

    def __repr__(self) -> str:
        return "VideoHandler()"
