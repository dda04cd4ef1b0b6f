"""SmolVLM (Hugging Face `SmolVLMForConditionalGeneration`), without image splitting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelSource
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import HFChatAdapter, Placeholder
from mmcore_adapters.hf_files import image_processor_config, image_settings, special_token_variables
from mmcore_adapters.renderer import MediaRule, fixed_count

__all__ = ["SmolVLMAdapter"]


class SmolVLMAdapter(HFChatAdapter):
    """SmolVLM with image splitting off: each image is resized (longest edge, Lanczos) and encoded whole;
    ``<image>`` becomes ``<fake_token_around_image><global-img>`` + N x ``<image>`` +
    ``<fake_token_around_image>``. Split crops (``<row_i_col_j>``) are not produced."""

    name = "smolvlm"
    description = "SmolVLM / Idefics3 (optimum-executorch), no image splitting"
    model_types: ClassVar[tuple[str, ...]] = ("smolvlm", "idefics3")
    processor_classes: ClassVar[tuple[str, ...]] = ("SmolVLMProcessor", "Idefics3Processor")

    def placeholder(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> Placeholder:
        token = special_token_variables(source).get("image_token", "<image>")
        processor = source.json("processor_config.json") or {}
        per_item = processor.get("image_seq_len")
        if per_item is None:
            vision = source.config.get("vision_config") or {}
            side = int(vision.get("image_size", 512)) // int(vision.get("patch_size", 16))
            per_item = side * side // int(source.config.get("scale_factor", 4)) ** 2
        return self.resolve_placeholder(source, tokenizer, token, int(per_item), options)

    def media_rule(self, source: ModelSource, tokenizer: Tokenizer, placeholder: Placeholder) -> MediaRule:
        tokens = special_token_variables(source)
        fake = tokens.get("fake_image_token", "<fake_token_around_image>")
        glob = tokens.get("global_image_token", "<global-img>")
        image = placeholder.token
        return MediaRule(
            kind="image",
            marker=image,
            placeholder_id=placeholder.token_id,
            expand=lambda n: f"{fake}{glob}{image * n}{fake}",
            count=fixed_count(placeholder.per_item),
        )

    def modality_settings(self, source: ModelSource) -> dict[str, Any]:
        side = int((source.config.get("vision_config") or {}).get("image_size", 512))
        defaults: dict[str, Any] = {
            "size": [side, side],
            "pre_resize_longest_edge": side,
            "resize_mode": "stretch",
            "resample": "lanczos",
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
        return image_settings(image_processor_config(source), defaults)

    def notes(self, source: ModelSource) -> tuple[str, ...]:
        notes = [
            "images are encoded whole (no <row_i_col_j> crops): matches the processor with do_image_splitting=False"
        ]
        if image_processor_config(source).get("do_image_splitting"):
            notes.append("the processor files enable image splitting; mmcore does not split, so prompts differ from HF")
        return tuple(notes)
