"""What one image of a given size takes in a prompt (encoder calls, placeholder and prompt tokens),
found by rendering a blank image of that size through the model's adapter, without encoding it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mmcore.adapters import PromptRenderer
from mmcore.chat import Message
from mmcore.errors import AdapterError, InvalidInputError

__all__ = ["ImagePlan", "parse_image_size", "plan_image"]


@dataclass(frozen=True)
class ImagePlan:
    """The prompt cost of one image of ``width`` x ``height`` pixels.

    Fields:
        encoder_calls: vision-encoder calls (SmolVLM: tiles plus the global image; Gemma 3
            pan-and-scan: the image plus its crops; otherwise 1).
        placeholder_tokens: placeholder positions of all its encoder calls.
        prompt_tokens: positions the image adds to a prompt (placeholders plus the layout text
            around them, e.g. ``<row_1_col_2>`` or Gemma 3's "here are some crops" sentence).
        spans: placeholder tokens per encoder call, in prompt order (None where the program takes
            embeddings between text segments without a fixed count).
        fits: how many such images fit the context after a one-turn prompt with room for one
            generated token, at most the adapter's limit (None when the context is unknown).
    """

    width: int
    height: int
    encoder_calls: int
    placeholder_tokens: int
    prompt_tokens: int
    spans: tuple[int | None, ...]
    fits: int | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "spans": list(self.spans)}

    def describe(self) -> str:
        """One line: ``1000x700: 17 encoder calls (16 tiles or crops + the whole image), ...``."""
        calls = f"{self.encoder_calls} encoder call{'s' if self.encoder_calls != 1 else ''}"
        if self.encoder_calls > 1:
            calls += f" ({self.encoder_calls - 1} tiles or crops + the whole image)"
        fit = "" if self.fits is None else f"; {self.fits} fit the context"
        return (
            f"{self.width}x{self.height}: {calls}, {self.placeholder_tokens} placeholder tokens, "
            f"{self.prompt_tokens} prompt tokens{fit}"
        )


def parse_image_size(text: str) -> tuple[int, int]:
    """``"1000x700"`` -> ``(1000, 700)`` (width x height, both positive)."""
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"image size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1000x700")
    return width, height


def plan_image(
    renderer: object,
    width: int,
    height: int,
    *,
    context: int | None,
    tokens_per_image: int | None = None,
    max_images: int | None = None,
) -> ImagePlan:
    """Render a one-turn chat holding a blank ``width`` x ``height`` image with `renderer` (the
    adapter's, bound to no encoder) and count what the image takes; `context` is the program's
    context length, `max_images` the adapter's limit per conversation. A renderer without a token
    prompt (parts in order) encodes each image whole: one call of `tokens_per_image` rows."""
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"image size {width}x{height}: both sides must be positive")
    if not isinstance(renderer, PromptRenderer):
        if tokens_per_image is None:
            raise AdapterError(
                "this adapter feeds each image whole (one encoder call) and does not declare how many "
                "positions the encoder's output takes; run one image to see it (`--stats`)"
            )
        fits = None if context is None else (context - 1) // tokens_per_image
        fits = fits if max_images is None or fits is None else min(fits, max_images)
        return ImagePlan(width, height, 1, tokens_per_image, tokens_per_image, (tokens_per_image,), fits)
    blank = np.zeros((height, width, 3), dtype=np.uint8)
    text = {"type": "text", "text": "?"}
    with_image: list[Message] = [{"role": "user", "content": [{"type": "image", "image": blank}, text]}]
    without: list[Message] = [{"role": "user", "content": [text]}]
    prompt = renderer.render_prompt(with_image)
    spans = tuple(span.length for span in prompt.media if span.kind == "image")
    base = len(renderer.render_prompt(without))
    added = len(prompt) - base
    fits = None if context is None or added <= 0 else max(0, (context - 1 - base) // added)
    fits = fits if max_images is None or fits is None else min(fits, max_images)
    return ImagePlan(width, height, len(spans), sum(n or 0 for n in spans), added, spans, fits)
