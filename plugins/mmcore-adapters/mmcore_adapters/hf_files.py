"""Reading Hugging Face processor files into mmcore-image / mmcore-audio settings and template variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.adapters import ModelSource
from mmcore.tokenizer import Tokenizer

__all__ = [
    "audio_settings",
    "feature_extractor_config",
    "image_processor_config",
    "image_settings",
    "special_token_variables",
    "token_id",
]

_IMAGE_KEYS = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "resample")


def image_processor_config(source: ModelSource) -> dict[str, Any]:
    """The image processor's settings: `preprocessor_config.json`, else `processor_config.json`'s
    `image_processor` (transformers v5 writes it there); empty when neither exists."""
    pre = source.json("preprocessor_config.json")
    if pre is not None and ("image_mean" in pre or "size" in pre):
        return pre
    nested = (source.json("processor_config.json") or {}).get("image_processor")
    return dict(nested) if isinstance(nested, Mapping) else {}


def feature_extractor_config(source: ModelSource) -> dict[str, Any]:
    """The audio feature extractor's settings (`preprocessor_config.json` or its nested form)."""
    pre = source.json("preprocessor_config.json")
    if pre is not None and "feature_size" in pre:
        return pre
    nested = (source.json("processor_config.json") or {}).get("feature_extractor")
    return dict(nested) if isinstance(nested, Mapping) else {}


def image_settings(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """mmcore-image settings from a Hugging Face image processor config, over `defaults`.

    ``size: {height, width}`` -> stretch; ``size: {shortest_edge}`` with a centre crop -> CLIP's
    shortest-edge resize and crop; ``size: {longest_edge}`` (Idefics3 / SmolVLM without splitting)
    -> a longest-edge pre-resize, then a stretch to ``max_image_size``.
    """
    settings = dict(defaults)
    for key in _IMAGE_KEYS:
        if config.get(key) is not None:
            settings[key] = list(config[key]) if isinstance(config[key], (list, tuple)) else config[key]
    size = config.get("size")
    if isinstance(size, Mapping):
        if "height" in size and "width" in size:
            settings.update(size=[int(size["height"]), int(size["width"])], resize_mode="stretch")
        elif "shortest_edge" in size:
            crop = config.get("crop_size")
            edge = int(size["shortest_edge"])
            settings.update(resize_mode="shortest_edge_crop", shortest_edge=edge)
            if isinstance(crop, Mapping) and config.get("do_center_crop", True):
                settings["size"] = [int(crop["height"]), int(crop["width"])]
            else:
                settings["size"] = [edge, edge]
        elif "longest_edge" in size:
            longest = int(size["longest_edge"])
            top = config.get("max_image_size")
            edge = int(top["longest_edge"]) if isinstance(top, Mapping) and "longest_edge" in top else longest
            settings.update(pre_resize_longest_edge=longest, size=[edge, edge], resize_mode="stretch")
    return settings


def audio_settings(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """mmcore-audio settings from a Whisper-style feature extractor config, over `defaults`."""
    settings = dict(defaults)
    mapping = {"feature_size": "n_mels", "sampling_rate": "sampling_rate", "hop_length": "hop_length", "n_fft": "n_fft"}
    for key, name in mapping.items():
        if config.get(key) is not None:
            settings[name] = int(config[key])
    if config.get("nb_max_frames") is not None:
        settings["n_frames"] = int(config["nb_max_frames"])
    elif config.get("chunk_length") is not None:
        settings["chunk_length"] = config["chunk_length"]
    return settings


def special_token_variables(source: ModelSource) -> dict[str, str]:
    """Template variables for the tokenizer's named special tokens (`bos_token`, `eos_token`,
    `image_token`, ...), as transformers passes its `special_tokens_map`."""
    out: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        for key, value in (source.json(name) or {}).items():
            if not key.endswith("_token") or key in out:
                continue
            if isinstance(value, Mapping):
                value = value.get("content")
            if isinstance(value, str):
                out[key] = value
    return out


def token_id(tokenizer: Tokenizer, text: str) -> int | None:
    """The id of `text` when it is exactly one token, else None."""
    ids = tokenizer.encode(text)
    return ids[0] if len(ids) == 1 else None
