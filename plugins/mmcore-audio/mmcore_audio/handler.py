"""The audio modality: `AudioInput` -> encoder input -> `audio_encoder` embeddings."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmcore.arrays import as_array
from mmcore.errors import InvalidInputError
from mmcore.inputs import EmbeddingsInput
from mmcore.registry import PrefillContext
from mmcore_audio.inputs import AudioInput
from mmcore_audio.processor import AudioProcessor
from mmcore_audio.settings import AudioSettings

__all__ = ["AudioHandler", "AUDIO_ENCODER"]

#: The program method that encodes audio.
AUDIO_ENCODER = "audio_encoder"


class AudioHandler:
    """Decodes, resamples and featurises `AudioInput`s, then runs the program's `audio_encoder`.

    The encoder's input 0 decides the path: `[B, n_mels, n_frames]` gets log-mel windows (B is the
    batch bound), `[1, n_samples]` gets the waveform. `ctx.settings` overrides the defaults (see
    `AudioSettings`).
    """

    name = "audio"
    input_types: tuple[type, ...] = (AudioInput,)

    def __init__(self) -> None:
        self._processors: dict[AudioSettings, AudioProcessor] = {}
        self._lock = threading.Lock()

    @property
    def settings_keys(self) -> tuple[str, ...]:
        """Keys accepted in the audio settings table (config files, adapters)."""
        from mmcore_audio.table import SETTING_KEYS

        return SETTING_KEYS

    def settings(self, ctx: PrefillContext) -> AudioSettings:
        """The settings in force for the context's program and settings."""
        spec = ctx.program.method_spec(AUDIO_ENCODER).input(0)
        return AudioSettings.for_encoder(spec, ctx.settings)

    def preprocess(self, item: AudioInput, ctx: PrefillContext) -> np.ndarray[Any, Any]:
        """Encoder input, a C-contiguous numpy array: features `[B, n_mels, n_frames]` or a waveform
        `[1, n_samples]`."""
        where = f"input {ctx.index} (AudioInput)"
        if not isinstance(item, AudioInput):
            raise InvalidInputError(f"{where}: expected an AudioInput, got {type(item).__name__}")
        return self._processor(self.settings(ctx))(item, where=where)

    def prefill(self, prepared: np.ndarray[Any, Any], ctx: PrefillContext) -> EmbeddingsInput:
        """Embeddings `[1, N, D]` (a numpy array): the encoder run on up to `batch_size` windows per
        call, outputs joined along dim 1 (an output `[b, n, D]` counts as `[1, b*n, D]`)."""
        method = ctx.program.method(AUDIO_ENCODER)
        prepared = as_array(prepared)
        step = self.settings(ctx).batch_size if prepared.ndim == 3 else 1
        parts: list[np.ndarray[Any, Any]] = []
        for begin in range(0, prepared.shape[0], step):
            batch = np.ascontiguousarray(prepared[begin : begin + step])  # [b, M, T] or [1, S]
            output = as_array(method.execute([batch])[0])  # [1, n, D] (cloned)
            parts.append(output.reshape(1, -1, output.shape[-1]) if output.ndim == 3 else output)
        return EmbeddingsInput(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1))

    def from_content(self, part: Mapping[str, Any]) -> AudioInput:
        """The input of a chat content part ``{"type": "audio", "audio": <path|bytes|array>, "sample_rate": R}``."""
        value = part.get("audio", part.get("path"))
        if value is None:
            raise InvalidInputError("an audio content part needs an 'audio' value (a path, bytes or array)")
        if isinstance(value, AudioInput):
            return value
        return AudioInput(Path(value) if isinstance(value, str) else value, sample_rate=part.get("sample_rate"))

    def parse_cli(self, value: str) -> AudioInput:
        """`--audio PATH` on the command line."""
        return AudioInput(Path(value))

    def _processor(self, settings: AudioSettings) -> AudioProcessor:
        with self._lock:
            processor = self._processors.get(settings)
            if processor is None:
                processor = self._processors[settings] = AudioProcessor(settings)
            return processor

    def __repr__(self) -> str:
        return "AudioHandler()"
