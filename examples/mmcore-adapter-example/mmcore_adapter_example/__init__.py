"""A minimal third-party model adapter: ChatML-style prompts with ``<|image|>`` placeholders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore_adapters import ChatTemplate, MediaRule, TemplateRenderer, fixed_count

from mmcore import hookimpl
from mmcore.adapters import AdapterRegistrar, ModelProfile, ModelSource, RendererContext
from mmcore.chat import Renderer
from mmcore.errors import AdapterError
from mmcore.tokenizer import Tokenizer

__all__ = ["ExampleChatMLAdapter", "TEMPLATE"]

#: The chat template: ``<|user|>`` / ``<|assistant|>`` turns, one ``<|image|>`` per image part.
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|image|>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_IMAGE = "<|image|>"


class ExampleChatMLAdapter:
    """Recognises ``config.json`` ``"model_type": "example-chatml"`` next to a program with a vision encoder."""

    name = "example-chatml"
    description = "example third-party adapter: ChatML-style template, <|image|> placeholders"
    fallback = False
    options: Mapping[str, str] = {"bos_token": "the text the template starts with (default: the tokenizer's BOS)"}

    def detect(self, source: ModelSource) -> str | None:
        """Why this adapter recognises the program, or None."""
        if source.model_type == "example-chatml" and source.has_method("vision_encoder"):
            return "config.json model_type 'example-chatml'"
        return None

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """One placeholder per encoder output row; images stretched to the encoder's input size."""
        spec = source.method_spec("vision_encoder")
        output = spec.outputs[0] if spec is not None and spec.outputs else None
        image_ids = tokenizer.encode(_IMAGE)
        if output is None or len(image_ids) != 1:
            raise AdapterError(f"{source.program.path}: needs a vision encoder and a tokenizer with {_IMAGE}")
        rows, image_id = output.shape[1], image_ids[0]
        bos = tokenizer.decode([tokenizer.bos_id], skip_special_tokens=False) if tokenizer.bos_id is not None else ""
        template = ChatTemplate(TEMPLATE, {"bos_token": str(options.get("bos_token", bos))}, origin="example template")
        rule = MediaRule("image", _IMAGE, image_id, lambda n: _IMAGE * n, fixed_count(rows))

        def make_renderer(context: RendererContext) -> Renderer:
            return TemplateRenderer(template, tokenizer, context, [rule], bos_token=bos or None, add_bos=False)

        return ModelProfile(
            adapter=self.name,
            make_renderer=make_renderer,
            modality_settings={"image": {"resize_mode": "stretch", "resample": "bilinear"}},
            tokens_per_item={"image": rows},
        )


@hookimpl
def mmcore_register_adapters(registry: AdapterRegistrar) -> None:
    """Register the example adapter."""
    registry.add(ExampleChatMLAdapter())
