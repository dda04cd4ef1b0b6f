"""ExecuTorch's generic multimodal contract: no chat template, inputs prefilled as given."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mmcore.adapters import ModelProfile, ModelSource, RendererContext
from mmcore.chat import PlainRenderer, Renderer
from mmcore.errors import ConfigError
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.hf_files import special_token_variables
from mmcore_adapters.renderer import TemplateRenderer
from mmcore_adapters.template import ChatTemplate

__all__ = ["GenericAdapter"]


class GenericAdapter:
    """The fallback: any program with `token_embedding` and `text_decoder`. Messages are rendered
    part by part without a template (`PlainRenderer`); preprocessing comes from the encoders'
    input specs and the config."""

    name = "generic"
    description = "ExecuTorch's generic multimodal contract: no chat template, parts prefilled in order"
    fallback: ClassVar[bool] = True
    options: ClassVar[Mapping[str, str]] = {
        "chat_template": "path of a Jinja chat template: text-only chats (and tools) are rendered through it"
    }

    def detect(self, source: ModelSource) -> str | None:
        """Any multimodal program."""
        if source.has_method("token_embedding") and source.has_method("text_decoder"):
            return "token_embedding + text_decoder (ExecuTorch's generic multimodal contract)"
        return None

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """No settings of its own: the modality plugins read the encoders' input specs."""

        if "chat_template" in options:
            return self._templated(source, tokenizer, options["chat_template"])

        def make_renderer(context: RendererContext) -> Renderer:
            return PlainRenderer(context.registry)

        return ModelProfile(adapter=self.name, make_renderer=make_renderer, notes=("no chat template: parts in order",))

    def _templated(self, source: ModelSource, tokenizer: Tokenizer, value: Any) -> ModelProfile:
        """Text chats rendered through the given template (media parts are refused: no placeholders)."""
        path = Path(str(value)).expanduser()
        if not isinstance(value, str) or not path.is_file():
            raise ConfigError(f"adapter option chat_template must name an existing Jinja file, got {value!r}")
        variables = special_token_variables(source)
        template = ChatTemplate(path.read_text(encoding="utf-8"), variables, origin=f"chat template {path}")
        program = source.program.path

        def make_renderer(context: RendererContext) -> Renderer:
            return TemplateRenderer(
                template, tokenizer, context, [], bos_token=variables.get("bos_token"), add_bos=False, program=program
            )

        notes = (f"chat template {path} (text only)",)
        return ModelProfile(adapter=self.name, make_renderer=make_renderer, notes=notes)
