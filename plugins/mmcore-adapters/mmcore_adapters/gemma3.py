"""Gemma 3 (optimum-executorch `multimodal-text-to-text` exports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelSource
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import HFChatAdapter, Placeholder
from mmcore_adapters.hf_files import image_processor_config, image_settings, special_token_variables, token_id
from mmcore_adapters.renderer import MediaRule, fixed_count

__all__ = ["Gemma3Adapter"]

_DEFAULT_TOKENS = 256


class Gemma3Adapter(HFChatAdapter):
    """`Gemma3ForConditionalGeneration`: SigLIP images resized (bilinear) to a square, mean = std = 0.5;
    each ``<start_of_image>`` becomes ``"\\n\\n<start_of_image>" + N x <image_soft_token> + "<end_of_image>\\n\\n"``;
    ``<end_of_turn>`` ends a reply. Pan-and-scan is not supported."""

    name = "gemma3"
    description = "Gemma 3 (optimum-executorch): chat template, SigLIP images, <end_of_turn> stops"
    model_types: ClassVar[tuple[str, ...]] = ("gemma3",)
    processor_classes: ClassVar[tuple[str, ...]] = ("Gemma3Processor",)

    def placeholder(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> Placeholder:
        token = special_token_variables(source).get("image_token", "<image_soft_token>")
        processor = source.json("processor_config.json") or {}
        per_item = processor.get("image_seq_length", source.config.get("mm_tokens_per_image", _DEFAULT_TOKENS))
        return self.resolve_placeholder(source, tokenizer, token, int(per_item), options)

    def media_rule(self, source: ModelSource, tokenizer: Tokenizer, placeholder: Placeholder) -> MediaRule:
        tokens = special_token_variables(source)
        boi = tokens.get("boi_token", "<start_of_image>")
        eoi = tokens.get("eoi_token", "<end_of_image>")
        image = placeholder.token
        return MediaRule(
            kind="image",
            marker=boi,
            placeholder_id=placeholder.token_id,
            expand=lambda n: f"\n\n{boi}{image * n}{eoi}\n\n",
            count=fixed_count(placeholder.per_item),
        )

    def modality_settings(self, source: ModelSource) -> dict[str, Any]:
        vision = source.config.get("vision_config") or {}
        size = int(vision.get("image_size", 896))
        defaults: dict[str, Any] = {
            "size": [size, size],
            "resize_mode": "stretch",
            "resample": "bilinear",
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
        return image_settings(image_processor_config(source), defaults)

    def stop_tokens(self, source: ModelSource, tokenizer: Tokenizer) -> frozenset[int]:
        end = token_id(tokenizer, "<end_of_turn>")
        return frozenset() if end is None else frozenset({end})

    def notes(self, source: ModelSource) -> tuple[str, ...]:
        return (
            "pan-and-scan crops are not produced (each image is one resized square)",
            "the exported decoder attends causally inside images (HF's token_type_ids bidirectional "
            "image attention is not exported)",
        )
