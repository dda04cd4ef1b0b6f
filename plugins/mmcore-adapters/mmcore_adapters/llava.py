"""LLaVA-1.5 (Hugging Face `LlavaForConditionalGeneration` exported by optimum-executorch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelSource
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import HFChatAdapter, Placeholder
from mmcore_adapters.hf_files import image_processor_config, image_settings, special_token_variables
from mmcore_adapters.renderer import MediaRule, fixed_count

__all__ = ["LlavaAdapter", "CLIP_MEAN", "CLIP_STD"]

#: OpenAI CLIP normalisation.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class LlavaAdapter(HFChatAdapter):
    """LLaVA-1.5: CLIP preprocessing (shortest edge, bicubic, centre crop); each ``<image>`` becomes
    N x ``<image>`` (patches squared, CLS dropped by the "default" feature strategy)."""

    name = "llava"
    description = "LLaVA-1.5 (optimum-executorch): chat template, CLIP images"
    model_types: ClassVar[tuple[str, ...]] = ("llava",)
    processor_classes: ClassVar[tuple[str, ...]] = ("LlavaProcessor",)

    def placeholder(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> Placeholder:
        token = special_token_variables(source).get("image_token", "<image>")
        processor = source.json("processor_config.json") or {}
        vision = source.config.get("vision_config") or {}
        patch = int(processor.get("patch_size") or vision.get("patch_size", 14))
        crop = image_processor_config(source).get("crop_size") or {}
        side = int(vision.get("image_size", 336))
        height, width = int(crop.get("height", side)), int(crop.get("width", side))
        per_item = (height // patch) * (width // patch) + int(processor.get("num_additional_image_tokens", 1))
        strategy = processor.get("vision_feature_select_strategy", source.config.get("vision_feature_select_strategy"))
        if strategy in (None, "default"):
            per_item -= 1
        return self.resolve_placeholder(source, tokenizer, token, per_item, options)

    def media_rule(self, source: ModelSource, tokenizer: Tokenizer, placeholder: Placeholder) -> MediaRule:
        token = placeholder.token
        return MediaRule(
            kind="image",
            marker=token,
            placeholder_id=placeholder.token_id,
            expand=lambda n: token * n,
            count=fixed_count(placeholder.per_item),
        )

    def modality_settings(self, source: ModelSource) -> dict[str, Any]:
        side = int((source.config.get("vision_config") or {}).get("image_size", 336))
        defaults: dict[str, Any] = {
            "size": [side, side],
            "resize_mode": "shortest_edge_crop",
            "shortest_edge": side,
            "resample": "bicubic",
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
        }
        return image_settings(image_processor_config(source), defaults)
