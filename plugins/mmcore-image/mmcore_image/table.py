"""The `[image]` table as a pydantic model: validation and JSON Schema of a model's
`preprocessor_config.json` keys and mmcore's own (`mmcore_image.settings` re-exports it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, Field, PlainValidator, WithJsonSchema, model_validator

from mmcore.settings import Settings, validate_table
from mmcore_image.settings import DEFAULT_MAX_PIXELS, Colour, Resample, ResizeMode

__all__ = ["ImageSettings", "SETTING_NAMES"]

# Hugging Face / Pillow integer resample codes (preprocessor_config.json "resample").
_RESAMPLE_CODES: dict[int, Resample] = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

Pixels = Annotated[int, Field(ge=1)]


def _size_value(value: Any) -> dict[str, int]:
    """`size` as preprocessor_config.json writes it, or mmcore's int / [height, width]."""
    if isinstance(value, Mapping):
        keys = set(value)
        for shape in ({"height", "width"}, {"shortest_edge"}, {"longest_edge"}):
            if keys == shape:
                return {k: _positive(value[k], f"size.{k}") for k in sorted(shape)}
        raise ValueError(
            "a size table must be {height, width}, {shortest_edge} or {longest_edge} (as in "
            f"preprocessor_config.json), got keys {sorted(keys)}"
        )
    height, width = _pair(value, "an int, [height, width], {height, width}, {shortest_edge} or {longest_edge}")
    return {"height": height, "width": width}


def _crop_value(value: Any) -> dict[str, int]:
    if isinstance(value, Mapping):
        if set(value) != {"height", "width"}:
            raise ValueError(f"a crop_size table must be {{height, width}}, got keys {sorted(value)}")
        return {k: _positive(value[k], f"crop_size.{k}") for k in ("height", "width")}
    height, width = _pair(value, "an int, [height, width] or {height, width}")
    return {"height": height, "width": width}


def _longest_value(value: Any) -> int:
    if isinstance(value, Mapping) and set(value) == {"longest_edge"}:
        return _positive(value["longest_edge"], "longest_edge")
    raise ValueError(f"must be {{longest_edge = N}}, got {value!r}")


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _pair(value: Any, expected: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return (value, value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return (_positive(value[0], "height"), _positive(value[1], "width"))
    raise ValueError(f"must be {expected} of positive integers")


def _triple_value(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return (float(value),) * 3
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            a, b, c = (float(v) for v in value)
            return (a, b, c)
    raise ValueError("must be a number or 3 numbers (R, G, B)")


def _colour_value(value: Any) -> Colour:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * 3
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
            r, g, b = value
            return (r, g, b)
    raise ValueError("must be an RGB colour: an int or three ints in [0, 255]")


def _resample_value(value: Any) -> Resample:
    if isinstance(value, int) and not isinstance(value, bool) and value in _RESAMPLE_CODES:
        return _RESAMPLE_CODES[value]
    if isinstance(value, str) and value in get_args(Resample):
        name: Resample = value  # type: ignore[assignment]
        return name
    raise ValueError(f"must be one of {list(get_args(Resample))} or a Pillow code 0-5")


def _always(what: str) -> Any:
    def check(value: bool | None) -> bool | None:
        if value is False:
            raise ValueError(f"mmcore-image always {what}; remove the key or set it to true")
        return value

    return check


def _never(what: str, adapter: str) -> Any:
    def check(value: bool | None) -> bool | None:
        if value is True:
            raise ValueError(
                f"{what} is not part of the [image] table; the {adapter} adapter does it "
                f'(adapter = "{adapter}" reads it from preprocessor_config.json); set it to false'
            )
        return value

    return check


_POSITIVE = {"type": "integer", "minimum": 1}
_TRUE = {"enum": [True, None], "description": "accepted as true (or null, as preprocessor_config.json may write)"}
_FALSE = {"enum": [False, None], "description": "accepted as false (or null, as preprocessor_config.json may write)"}
_PAIR = {"type": "array", "items": _POSITIVE, "minItems": 2, "maxItems": 2}
_HEIGHT_WIDTH = {
    "type": "object",
    "properties": {"height": _POSITIVE, "width": _POSITIVE},
    "required": ["height", "width"],
    "additionalProperties": False,
}


def _edge(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: _POSITIVE}, "required": [name], "additionalProperties": False}


_NUMBER = {"type": "number"}
_TRIPLE = {"anyOf": [_NUMBER, {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3}]}
_BYTE = {"type": "integer", "minimum": 0, "maximum": 255}
_COLOUR = {"anyOf": [_BYTE, {"type": "array", "items": _BYTE, "minItems": 3, "maxItems": 3}]}

SizeSpec = Annotated[
    dict[str, int],
    PlainValidator(_size_value),
    WithJsonSchema({"anyOf": [_POSITIVE, _PAIR, _HEIGHT_WIDTH, _edge("shortest_edge"), _edge("longest_edge")]}),
]
CropSpec = Annotated[
    dict[str, int], PlainValidator(_crop_value), WithJsonSchema({"anyOf": [_POSITIVE, _PAIR, _HEIGHT_WIDTH]})
]
LongestEdge = Annotated[int, PlainValidator(_longest_value), WithJsonSchema(_edge("longest_edge"))]
Triple = Annotated[tuple[float, float, float], PlainValidator(_triple_value), WithJsonSchema(_TRIPLE)]
StdTriple = Annotated[
    tuple[float, float, float],
    PlainValidator(_triple_value),
    AfterValidator(lambda v: v if all(x != 0 for x in v) else _raise("must be non-zero")),
    WithJsonSchema(
        {
            "anyOf": [
                {**_NUMBER, "not": {"const": 0}},
                {"type": "array", "items": {**_NUMBER, "not": {"const": 0}}, "minItems": 3, "maxItems": 3},
            ]
        }
    ),
]
ColourSpec = Annotated[Colour, PlainValidator(_colour_value), WithJsonSchema(_COLOUR)]
ResampleSpec = Annotated[
    Resample,
    PlainValidator(_resample_value),
    WithJsonSchema({"anyOf": [{"enum": list(get_args(Resample))}, {"type": "integer", "minimum": 0, "maximum": 5}]}),
]


def _raise(message: str) -> Any:
    raise ValueError(message)


class ImageSettings(Settings):
    """The `[image]` table: a model's `preprocessor_config.json` keys as-is, plus mmcore's own.

    Hugging Face keys: `size` (``{height, width}`` -> stretch to it; ``{shortest_edge}`` -> resize the
    shortest edge, then centre-crop to `crop_size`, as CLIP; ``{longest_edge}`` -> resize the longest
    edge, then stretch to `max_image_size`, as Idefics3), `crop_size`, `do_center_crop`, `resample`
    (Pillow code or name), `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std`,
    `max_image_size`; `do_resize` and `do_convert_rgb` must be true (mmcore-image always resizes
    to the encoder's input and feeds RGB); `do_pan_and_scan` (Gemma3) and `do_image_splitting`
    (Idefics3 / SmolVLM) must be false (their adapters do that), the `pan_and_scan_*` numbers are
    then unused; `image_processor_type`, `processor_class` and `image_seq_length` are accepted
    and ignored. Output size, dtype and rank default to the `vision_encoder` input.
    """

    size: SizeSpec | None = Field(
        default=None, description="output size: int, [height, width], or preprocessor_config.json's size table"
    )
    crop_size: CropSpec | None = Field(default=None, description="centre-crop size after a shortest-edge resize")
    do_resize: Annotated[
        bool | None, AfterValidator(_always("resizes to the vision encoder's input")), WithJsonSchema(_TRUE)
    ] = None
    do_center_crop: bool | None = Field(default=None, description="crop to crop_size after a shortest-edge resize")
    do_convert_rgb: Annotated[bool | None, AfterValidator(_always("converts images to RGB")), WithJsonSchema(_TRUE)] = (
        None
    )
    resize_mode: ResizeMode | None = Field(default=None, description="stretch, shortest_edge_crop or longest_edge_pad")
    resample: ResampleSpec | None = Field(default=None, description="resampling filter: a name or Pillow's code 0-5")
    shortest_edge: Pixels | None = Field(default=None, description="target of the shortest edge in shortest_edge_crop")
    pre_resize_longest_edge: Pixels | None = Field(default=None, description="first resize the longest edge to this")
    max_image_size: LongestEdge | None = Field(
        default=None, description="{longest_edge}: size after a longest-edge resize"
    )
    do_rescale: bool | None = Field(default=None, description="multiply 0-255 pixels by rescale_factor (default true)")
    rescale_factor: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="default 1/255"
    )
    do_normalize: bool | None = Field(
        default=None, description="(x - image_mean) / image_std (default: when both are given)"
    )
    image_mean: Triple | None = Field(default=None, description="per-channel mean (a number or 3)")
    image_std: StdTriple | None = Field(default=None, description="per-channel std, non-zero (a number or 3)")
    fill: ColourSpec | None = Field(default=None, description="RGB colour of padding, 0-255")
    background: ColourSpec | None = Field(default=None, description="RGB colour transparent pixels are composited over")
    max_pixels: Pixels | None = Field(default=None, description=f"refuse larger images (default {DEFAULT_MAX_PIXELS})")
    jpeg_draft: bool | None = Field(default=None, description="let libjpeg decode at a reduced scale")
    exif_orientation: bool | None = Field(default=None, description="apply the EXIF Orientation tag (default true)")
    do_pan_and_scan: Annotated[
        bool | None, AfterValidator(_never("pan-and-scan", "gemma3")), WithJsonSchema(_FALSE)
    ] = None
    pan_and_scan_min_crop_size: Pixels | None = Field(default=None, description="see do_pan_and_scan")
    pan_and_scan_max_num_crops: Pixels | None = Field(default=None, description="see do_pan_and_scan")
    pan_and_scan_min_ratio_to_activate: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="see do_pan_and_scan"
    )
    do_image_splitting: Annotated[
        bool | None, AfterValidator(_never("image splitting", "smolvlm")), WithJsonSchema(_FALSE)
    ] = None
    image_seq_length: Pixels | None = Field(default=None, description="informational: tokens per image")
    image_processor_type: str | None = Field(default=None, description="informational (preprocessor_config.json)")
    processor_class: str | None = Field(default=None, description="informational (preprocessor_config.json)")

    @model_validator(mode="after")
    def _consistent(self) -> ImageSettings:
        if self.do_normalize and (self.image_mean is None or self.image_std is None):
            raise ValueError("do_normalize needs image_mean and image_std")
        return self

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> ImageSettings:
        """The table validated; `ConfigError` naming ``image.<key>`` otherwise."""
        return validate_table(cls, settings, "image")

    def preprocess_values(self) -> dict[str, Any]:
        """`PreprocessSettings` keyword arguments (all but dtype and rank), Hugging Face keys translated."""
        values: dict[str, Any] = {}
        size, crop = self.size, self.crop_size
        if size is not None and "shortest_edge" in size:
            edge = size["shortest_edge"]
            values.update(resize_mode="shortest_edge_crop", shortest_edge=edge)
            use_crop = crop is not None and self.do_center_crop is not False
            values["size"] = (crop["height"], crop["width"]) if use_crop and crop else (edge, edge)
        elif size is not None and "longest_edge" in size:
            top = self.max_image_size or size["longest_edge"]
            values.update(resize_mode="stretch", pre_resize_longest_edge=size["longest_edge"], size=(top, top))
        elif size is not None:
            values["size"] = (size["height"], size["width"])
        elif crop is not None:
            values["size"] = (crop["height"], crop["width"])
        for name in (
            "resize_mode", "resample", "shortest_edge", "pre_resize_longest_edge", "do_rescale", "rescale_factor",
            "image_mean", "image_std", "fill", "background", "max_pixels", "jpeg_draft", "exif_orientation",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        both = self.image_mean is not None and self.image_std is not None
        values["do_normalize"] = self.do_normalize if self.do_normalize is not None else both
        return values


#: Keys the `[image]` table accepts.
SETTING_NAMES: frozenset[str] = frozenset(ImageSettings.model_fields)
