"""SmolVLM / Idefics3 (Hugging Face `SmolVLMForConditionalGeneration`), with or without image splitting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelSource
from mmcore.errors import AdapterError
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import HFChatAdapter, Placeholder
from mmcore_adapters.hf_files import image_processor_config, image_settings, special_token_variables
from mmcore_adapters.renderer import MediaRule, fixed_count

__all__ = ["SmolVLMAdapter"]


class SmolVLMAdapter(HFChatAdapter):
    """SmolVLM as its processor files say. Without splitting each image is resized (longest edge,
    Lanczos) and encoded whole: ``<image>`` becomes ``<fake_token_around_image><global-img>`` + N x
    ``<image>`` + ``<fake_token_around_image>``. With ``do_image_splitting`` the image is cut into
    ``max_image_size`` tiles, each encoded on its own in prompt order, and the prompt holds
    ``<fake_token_around_image><row_i_col_j>`` + N x ``<image>`` per tile (a newline after each row),
    then ``\n`` and the global image's block."""

    name = "smolvlm"
    description = "SmolVLM / Idefics3 (optimum-executorch), image splitting as the processor files say"
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

        def whole(n: int) -> str:
            return f"{fake}{glob}{image * n}{fake}"

        split = splitting(source)
        layout = None
        if split is not None:
            longest, tile, resample = split
            n = placeholder.per_item

            def layout(item: Any) -> tuple[list[tuple[Any, int]], str]:
                tiles, rows, cols = split_tiles(item, longest_edge=longest, tile=tile, resample=resample)
                text = "".join(
                    f"{fake}<row_{r + 1}_col_{c + 1}>{image * n}" + ("\n" if c == cols - 1 else "")
                    for r in range(rows)
                    for c in range(cols)
                )
                text = f"{text}\n{whole(n)}" if rows else whole(n)
                return [(t, n) for t in tiles], text

        return MediaRule(
            kind="image",
            marker=image,
            placeholder_id=placeholder.token_id,
            expand=whole,
            count=fixed_count(placeholder.per_item),
            layout=layout,
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
        settings = image_settings(image_processor_config(source), defaults)
        split = splitting(source)
        if split is not None:  # tiles arrive at the encoder's size: no further resize
            settings["pre_resize_longest_edge"] = split[1]
        return settings

    def notes(self, source: ModelSource) -> tuple[str, ...]:
        split = splitting(source)
        if split is None:
            return ("images are encoded whole: matches the processor with do_image_splitting=False",)
        longest, tile, _ = split
        return (
            f"image splitting on: the longest edge is resized to {longest}, then cut into {tile}x{tile} tiles "
            "plus a global image; each tile is one encoder call and one placeholder run",
        )


def splitting(source: ModelSource) -> tuple[int, int, str] | None:
    """(longest edge, tile side, resample filter) when the processor splits images, else None."""
    config = image_processor_config(source)
    if not config.get("do_image_splitting"):
        return None
    size = config.get("size") or {}
    top = config.get("max_image_size") or {}
    side = int((source.config.get("vision_config") or {}).get("image_size", 512))
    tile = int(top.get("longest_edge", side)) if isinstance(top, Mapping) else side
    longest = int(size.get("longest_edge", 4 * tile)) if isinstance(size, Mapping) else 4 * tile
    return longest, tile, _RESAMPLE_NAMES.get(config.get("resample", 1), "lanczos")


#: PIL's resample numbers, as processor files write them.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def split_tiles(item: Any, *, longest_edge: int, tile: int, resample: str) -> tuple[list[Any], int, int]:
    """The tiles of an image item as image inputs (row-major crops, then the global image), rows, cols."""
    try:
        from mmcore_image import ImageInput, split_image
    except ImportError:  # pragma: no cover - the adapter's image extra is missing
        message = "SmolVLM image splitting needs the image plugin: pip install mmcore-adapters[image]"
        raise AdapterError(message) from None
    source = getattr(item, "source", item)
    what = f"image {item!r}"
    split = split_image(source, longest_edge=longest_edge, tile=tile, resample=resample, what=what)  # type: ignore[arg-type]
    return [ImageInput(t) for t in split.tiles], split.rows, split.cols
