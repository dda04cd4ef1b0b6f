"""Gemma 3 (optimum-executorch `multimodal-text-to-text` exports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelSource
from mmcore.errors import AdapterError
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import HFChatAdapter, Placeholder
from mmcore_adapters.hf_files import image_processor_config, image_settings, special_token_variables, token_id
from mmcore_adapters.renderer import MediaRule, fixed_count

__all__ = ["Gemma3Adapter"]

_DEFAULT_TOKENS = 256


class Gemma3Adapter(HFChatAdapter):
    """`Gemma3ForConditionalGeneration`: SigLIP images resized (bilinear) to a square, mean = std = 0.5;
    each ``<start_of_image>`` becomes ``"\\n\\n<start_of_image>" + N x <image_soft_token> + "<end_of_image>\\n\\n"``;
    ``<end_of_turn>`` ends a reply. With ``do_pan_and_scan`` an image whose aspect ratio is exaggerated
    enough also gets 2..N crops, each encoded on its own after the whole image, in the processor's
    ``"Here is the original image … and here are some crops to help you see better …"`` layout."""

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

        def whole(n: int) -> str:
            return f"\n\n{boi}{image * n}{eoi}\n\n"

        crops = pan_and_scan_settings(source)
        layout = None
        if crops is not None:
            n, settings = placeholder.per_item, crops

            def layout(item: Any) -> tuple[list[tuple[Any, int]], str]:
                images = pan_and_scan_images(item, settings)
                if len(images) == 1:
                    return [(images[0], n)], whole(n)
                text = (
                    f"Here is the original image {whole(n)} and here are some crops to help you see better "
                    + " ".join([whole(n)] * (len(images) - 1))
                )
                return [(x, n) for x in images], text

        return MediaRule(
            kind="image",
            marker=boi,
            placeholder_id=placeholder.token_id,
            expand=whole,
            count=fixed_count(placeholder.per_item),
            layout=layout,
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
        crops = pan_and_scan_settings(source)
        return (
            "images are encoded whole (do_pan_and_scan is off)"
            if crops is None
            else f"pan-and-scan on: images with an aspect ratio of at least {crops.min_ratio_to_activate} also get "
            f"2-{crops.max_num_crops} crops of at least {crops.min_crop_size} px, one encoder call each",
            "the exported decoder attends causally inside images (HF's token_type_ids bidirectional "
            "image attention is not exported)",
        )


def pan_and_scan_settings(source: ModelSource) -> Any:
    """The processor's `PanAndScan` settings when `do_pan_and_scan` is on, else None."""
    config = image_processor_config(source)
    if not config.get("do_pan_and_scan"):
        return None
    pan_and_scan = _image_plugin("pan-and-scan")

    def setting(key: str, default: float) -> Any:
        value = config.get(key)
        return default if value is None else value  # processor files write null for "the default"

    try:
        return pan_and_scan.PanAndScan(
            min_crop_size=int(setting("pan_and_scan_min_crop_size", 256)),
            max_num_crops=int(setting("pan_and_scan_max_num_crops", 4)),
            min_ratio_to_activate=float(setting("pan_and_scan_min_ratio_to_activate", 1.2)),
        )
    except (TypeError, ValueError) as exc:
        message = f"{source.folder}: the image processor's pan_and_scan_* settings are invalid: {exc}"
        raise AdapterError(message) from None


def pan_and_scan_images(item: Any, settings: Any) -> list[Any]:
    """The image item and its pan-and-scan crops as image inputs."""
    plugin = _image_plugin("pan-and-scan")
    source = getattr(item, "source", item)
    images = plugin.pan_and_scan(source, settings, what=f"image {item!r}")
    return [plugin.ImageInput(x) for x in images]


def _image_plugin(feature: str) -> Any:
    try:
        import mmcore_image
    except ImportError:  # pragma: no cover - the adapter's image extra is missing
        raise AdapterError(f"Gemma 3 {feature} needs the image plugin: pip install mmcore-adapters[image]") from None
    return mmcore_image
