"""ExecuTorch's generic multimodal contract: no chat template, inputs prefilled as given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmcore.adapters import ModelProfile, ModelSource, RendererContext
from mmcore.chat import PlainRenderer, Renderer
from mmcore.tokenizer import Tokenizer

__all__ = ["GenericAdapter"]


class GenericAdapter:
    """The fallback: any program with `token_embedding` and `text_decoder`. Messages are rendered
    part by part without a template (`PlainRenderer`); preprocessing comes from the encoders'
    input specs and the config."""

    name = "generic"
    description = "ExecuTorch's generic multimodal contract: no chat template, parts prefilled in order"
    fallback: ClassVar[bool] = True
    options: ClassVar[Mapping[str, str]] = {}

    def detect(self, source: ModelSource) -> str | None:
        """Any multimodal program."""
        if source.has_method("token_embedding") and source.has_method("text_decoder"):
            return "token_embedding + text_decoder (ExecuTorch's generic multimodal contract)"
        return None

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """No settings of its own: the modality plugins read the encoders' input specs."""

        def make_renderer(context: RendererContext) -> Renderer:
            return PlainRenderer(context.registry)

        return ModelProfile(adapter=self.name, make_renderer=make_renderer, notes=("no chat template: parts in order",))
