"""Voxtral (Hugging Face `VoxtralForConditionalGeneration` exported by optimum-executorch; Tekken tokenizer)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelProfile, ModelSource
from mmcore.errors import AdapterError, ConfigError
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import COMMON_OPTIONS, HFChatAdapter, Placeholder
from mmcore_adapters.hf_files import audio_settings, feature_extractor_config
from mmcore_adapters.renderer import Counter, MediaRule

__all__ = ["VoxtralAdapter", "VOXTRAL_TEMPLATE"]

#: mistral-common's instruct format (v7): ``<s>[INST]`` + per part ``[BEGIN_AUDIO][AUDIO]`` or text + ``[/INST]``.
VOXTRAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ message['content'] }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'audio' %}[BEGIN_AUDIO][AUDIO]{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}[/INST]"
    "{% elif message['role'] == 'assistant' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{{ item['text'] }}{% endfor %}{% endif %}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)
_AUDIO, _BEGIN = "[AUDIO]", "[BEGIN_AUDIO]"
_FRAMES_PER_TOKEN = 8  # stride-2 conv, then 4 encoder positions per projector row


class VoxtralAdapter(HFChatAdapter):
    """Voxtral: 16-kHz mono log-mel (128 bins) windows of the feature extractor's chunk length,
    extracted jointly as transformers' `VoxtralProcessor`; each audio becomes ``[BEGIN_AUDIO]`` +
    ``[AUDIO]`` x (tokens per window x windows). The prompt follows mistral-common's instruct format."""

    name = "voxtral"
    description = "Voxtral (optimum-executorch): Tekken tokenizer, log-mel audio windows"
    modality: ClassVar[str] = "audio"
    model_types: ClassVar[tuple[str, ...]] = ("voxtral",)
    processor_classes: ClassVar[tuple[str, ...]] = ("VoxtralProcessor",)
    options: ClassVar[Mapping[str, str]] = {
        **COMMON_OPTIONS,
        "chunk_mode": "'joint' (transformers, default) or 'separate' (mistral-common) log-mel extraction",
    }

    def detect_more(self, source: ModelSource) -> str | None:
        if source.file("tekken.json") is not None:
            return "a Tekken tokenizer (tekken.json) next to an audio program"
        return None

    def builtin_template(self) -> str | None:
        return VOXTRAL_TEMPLATE

    def default_variables(self) -> dict[str, str]:
        return {"bos_token": "<s>", "eos_token": "</s>"}

    def add_bos(self, source: ModelSource) -> bool:
        return False  # the template writes <s>

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """The shared profile, with the `chunk_mode` option applied to the audio settings."""
        mode = options.get("chunk_mode", "joint")
        if mode not in ("joint", "separate"):
            raise ConfigError(f"adapter option chunk_mode must be 'joint' or 'separate', got {mode!r}")
        profile = super().configure(source, tokenizer, options)
        audio = {**profile.modality_settings["audio"], "chunk_mode": mode}
        return dataclasses.replace(profile, modality_settings={"audio": audio})

    def placeholder(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> Placeholder:
        return self.resolve_placeholder(source, tokenizer, _AUDIO, self._tokens_per_window(source), options)

    def media_rule(self, source: ModelSource, tokenizer: Tokenizer, placeholder: Placeholder) -> MediaRule:
        return MediaRule(
            kind="audio",
            marker=_AUDIO,
            placeholder_id=placeholder.token_id,
            expand=lambda n: _AUDIO * n,
            count=self._counter(source, placeholder.per_item),
        )

    def modality_settings(self, source: ModelSource) -> dict[str, Any]:
        defaults: dict[str, Any] = {"n_mels": 128, "sampling_rate": 16000, "chunk_mode": "joint"}
        return audio_settings(feature_extractor_config(source), defaults)

    def notes(self, source: ModelSource) -> tuple[str, ...]:
        return ("audio is resampled to the model's rate and mixed down to mono before feature extraction",)

    def _tokens_per_window(self, source: ModelSource) -> int:
        audio = (source.json("tekken.json") or {}).get("audio") if source.file("tekken.json") else None
        if isinstance(audio, Mapping) and "frame_rate" in audio and "chunk_length_s" in audio:
            return round(float(audio["frame_rate"]) * float(audio["chunk_length_s"]))
        frames = self.modality_settings(source).get("n_frames")
        spec = source.method_spec("audio_encoder")
        if frames is None and spec is not None and spec.inputs and spec.inputs[0] is not None:
            frames = spec.inputs[0].shape[-1]
        if frames is None:
            raise AdapterError("cannot tell Voxtral's audio tokens per window: no tekken.json and no encoder spec")
        return int(frames) // _FRAMES_PER_TOKEN

    def _counter(self, source: ModelSource, per_window: int) -> Counter:
        settings = self.modality_settings(source)
        spec = source.method_spec("audio_encoder")

        def count(item: Any) -> tuple[Any, int]:
            from mmcore_audio import AudioInput, AudioSettings, load_mono

            assert spec is not None and spec.inputs[0] is not None
            resolved = AudioSettings.for_encoder(spec.inputs[0], settings)
            samples = load_mono(item, resolved.sample_rate, quality=resolved.resample_quality)
            windows = max(1, math.ceil(samples.shape[0] / resolved.window_samples))
            return AudioInput(samples, sample_rate=resolved.sample_rate), windows * per_window

        return count
