"""ExecuTorch's own LLaVA export (`examples/models/llava/export_llava.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mmcore.adapters import ModelProfile, ModelSource, RendererContext
from mmcore.arrays import dtype_name
from mmcore.chat import Message, Renderer, content_parts
from mmcore.errors import ConfigError, InvalidInputError
from mmcore.inputs import TokensInput
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.base import int_option
from mmcore_adapters.renderer import LayoutPiece, SegmentRenderer

__all__ = ["ExecuTorchLlavaAdapter", "LLAVA_SYSTEM_PROMPT"]

#: The system prompt of ExecuTorch's LLaVA runner (`examples/models/llava/main.cpp`).
LLAVA_SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


class ExecuTorchLlavaAdapter:
    """ExecuTorch's LLaVA: a uint8 ``[3, H, W]`` image (aspect kept, padded by the graph), a
    start-position decoder, and the prompt ``"<system> USER: " + image + text + " ASSISTANT:"`` with
    each text segment tokenized on its own, as ExecuTorch's C++ example does."""

    name = "executorch-llava"
    description = "ExecuTorch's LLaVA export: uint8 CHW image, start-position decoder, Vicuna prompt"
    fallback: ClassVar[bool] = False
    options: ClassVar[Mapping[str, str]] = {
        "system_prompt": "the system text before the first USER: turn",
        "max_items": "most images one conversation may hold (default 1, as LLaVA-1.5 was trained)",
    }

    def detect(self, source: ModelSource) -> str | None:
        """A uint8 rank-3 `vision_encoder` input and a one-element (start position) decoder input."""
        vision = source.method_spec("vision_encoder")
        decoder = source.method_spec("text_decoder")
        if vision is None or decoder is None or not source.has_method("token_embedding"):
            return None
        image = vision.inputs[0] if vision.inputs else None
        position = decoder.inputs[1] if len(decoder.inputs) > 1 else None
        if image is None or position is None or source.model_type is not None:
            return None
        if dtype_name(image.dtype) == "uint8" and image.rank == 3 and position.shape == (1,):
            return "uint8 [3, H, W] vision_encoder input and a start-position text_decoder (ExecuTorch LLaVA export)"
        return None

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """uint8 images fitted inside the encoder's bound, the Vicuna-style layout, one image by default."""
        system = options.get("system_prompt", LLAVA_SYSTEM_PROMPT)
        if not isinstance(system, str):
            raise ConfigError(f"adapter option system_prompt must be a string, got {system!r}")
        limit = int_option(options, "max_items") or 1
        vision = source.method_spec("vision_encoder")
        output = vision.outputs[0] if vision is not None and vision.outputs else None
        rows = output.shape[1] if output is not None and output.rank == 3 else None
        eos = tokenizer.eos_ids
        eos_id = min(eos) if eos else None
        program = source.program.path

        def layout(messages: Sequence[Message], add_generation_prompt: bool) -> list[LayoutPiece]:
            return _layout(messages, add_generation_prompt, system, eos_id)

        def make_renderer(context: RendererContext) -> Renderer:
            return SegmentRenderer(
                layout, tokenizer, context, rows={"image": rows}, add_bos=True, limits={"image": limit}, program=program
            )

        return ModelProfile(
            adapter=self.name,
            make_renderer=make_renderer,
            modality_settings={"image": {"resize_mode": "longest_edge_pad", "resample": "bilinear", "fill": [0, 0, 0]}},
            tokens_per_item={"image": rows} if rows is not None else {},
            max_items={"image": limit},
            notes=(
                "images are resized to fit the encoder's bound (aspect kept) and centred on black; the exported "
                "graph rescales and normalises them itself",
                "the text decoder takes a start position (input_pos [1])",
            ),
        )


def _layout(
    messages: Sequence[Message], add_generation_prompt: bool, system: str, eos_id: int | None
) -> list[LayoutPiece]:
    """``system + " USER: "`` + parts + ``" ASSISTANT:"`` per user turn; answers end with EOS."""
    out: list[LayoutPiece] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        parts = content_parts(message, index)
        if role == "system":
            if index == 0:
                system = "".join(str(p.get("text", "")) for p in parts)
            continue
        if not out:
            out.append(f"{system} " if system else "")
        if role == "user":
            out.append("USER: ")
            for number, part in enumerate(parts):
                if part["type"] == "text":
                    out.append(str(part.get("text", "")))
                elif part["type"] == "image":
                    out.append(("image", part))
                else:
                    raise InvalidInputError(
                        f"message {index} part {number}: ExecuTorch's LLaVA takes text and image parts, not "
                        f"{part['type']!r}"
                    )
            out.append(" ASSISTANT:")
        elif role == "assistant":
            if "tokens" in message:
                out.append(TokensInput(int(i) for i in message["tokens"]))
                continue
            out.append(" " + "".join(str(p.get("text", "")) for p in parts))
            if eos_id is not None:
                out.append(TokensInput([eos_id]))
        else:
            raise InvalidInputError(f"message {index}: unknown role {role!r}; use system, user or assistant")
    return [piece for piece in out if piece != ""]
