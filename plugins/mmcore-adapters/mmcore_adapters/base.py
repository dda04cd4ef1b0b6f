"""What the Hugging Face chat-template adapters share: detection, options, placeholders, the renderer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mmcore.adapters import ModelProfile, ModelSource, RendererContext
from mmcore.chat import Renderer
from mmcore.errors import AdapterError, ConfigError
from mmcore.tokenizer import Tokenizer
from mmcore_adapters.hf_files import special_token_variables, token_id
from mmcore_adapters.renderer import MediaRule, TemplateRenderer
from mmcore_adapters.template import ChatTemplate

__all__ = ["HFChatAdapter", "Placeholder", "int_option", "ENCODER_OF"]

#: The encoder method of each modality.
ENCODER_OF = {"image": "vision_encoder", "audio": "audio_encoder"}
_CONSTANT_OF = {"image": "vision_token_id", "audio": "audio_token_id"}
_CONFIG_KEYS = {"image": ("image_token_id", "image_token_index"), "audio": ("audio_token_id", "audio_token_index")}

COMMON_OPTIONS: dict[str, str] = {
    "chat_template": "path of a Jinja chat template used instead of the model's own",
    "max_items": "most media items (images or audio clips) one conversation may hold",
    "tokens_per_item": "placeholder tokens per image / per audio window (overrides the processor files)",
}


def int_option(options: Mapping[str, Any], key: str) -> int | None:
    """A positive integer option, or None when absent; `ConfigError` otherwise."""
    if key not in options:
        return None
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"adapter option {key} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Placeholder:
    """A modality's placeholder token and how many of them one item takes."""

    token: str
    token_id: int
    per_item: int


class HFChatAdapter:
    """Base of the adapters of Hugging Face families exported by optimum-executorch.

    Subclasses name the family (`model_types`, `processor_classes`), its modality, and supply
    `placeholder`, `media_rule`, `modality_settings` and `stop_tokens`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    fallback: ClassVar[bool] = False
    modality: ClassVar[str] = "image"
    model_types: ClassVar[tuple[str, ...]] = ()
    processor_classes: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[Mapping[str, str]] = COMMON_OPTIONS

    # -- ModelAdapter -----------------------------------------------------------------------------
    def detect(self, source: ModelSource) -> str | None:
        """Recognised by `config.json`'s `model_type` or the processor class, given the right encoder."""
        if not all(source.has_method(m) for m in ("token_embedding", "text_decoder", ENCODER_OF[self.modality])):
            return None
        if source.model_type in self.model_types:
            return f"config.json model_type '{source.model_type}'"
        if source.processor_class in self.processor_classes:
            return f"processor class '{source.processor_class}'"
        return self.detect_more(source)

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """Settings from the processor files, the chat template, placeholders and stop tokens."""
        placeholder = self.placeholder(source, tokenizer, options)
        rule = self.media_rule(source, tokenizer, placeholder)
        template = self.chat_template(source, options)
        variables = template.variables
        stop = self.stop_tokens(source, tokenizer)
        limit = int_option(options, "max_items") or self.default_max_items(source)
        limits = {self.modality: limit} if limit is not None else {}
        bos_token = variables.get("bos_token")
        program = source.program.path

        def make_renderer(context: RendererContext) -> Renderer:
            return TemplateRenderer(
                template,
                tokenizer,
                context,
                [rule],
                bos_token=bos_token,
                add_bos=self.add_bos(source),
                stop_ids=stop,
                limits=limits,
                program=program,
            )

        return ModelProfile(
            adapter=self.name,
            make_renderer=make_renderer,
            modality_settings={self.modality: self.modality_settings(source)},
            stop_token_ids=stop,
            tokens_per_item={self.modality: placeholder.per_item},
            max_items=limits,
            notes=self.notes(source),
        )

    # -- hooks for subclasses -------------------------------------------------------------------
    def detect_more(self, source: ModelSource) -> str | None:
        """Other evidence of this family (none by default)."""
        return None

    def placeholder(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> Placeholder:
        raise NotImplementedError

    def media_rule(self, source: ModelSource, tokenizer: Tokenizer, placeholder: Placeholder) -> MediaRule:
        raise NotImplementedError

    def modality_settings(self, source: ModelSource) -> dict[str, Any]:
        raise NotImplementedError

    def stop_tokens(self, source: ModelSource, tokenizer: Tokenizer) -> frozenset[int]:
        """Ids that end a reply besides the tokenizer's EOS (none by default)."""
        return frozenset()

    def default_max_items(self, source: ModelSource) -> int | None:
        """The family's own limit on media items per conversation (none by default)."""
        return None

    def add_bos(self, source: ModelSource) -> bool:
        """Whether the tokenizer adds BOS when the rendered text does not start with it."""
        config = source.json("tokenizer_config.json") or {}
        return bool(config.get("add_bos_token", True))

    def notes(self, source: ModelSource) -> tuple[str, ...]:
        return ()

    def builtin_template(self) -> str | None:
        """A template used when the model ships none (none by default)."""
        return None

    def default_variables(self) -> dict[str, str]:
        """Template variables used when the tokenizer files do not name them (none by default)."""
        return {}

    # -- shared helpers ---------------------------------------------------------------------------
    def chat_template(self, source: ModelSource, options: Mapping[str, Any]) -> ChatTemplate:
        """The `chat_template` option's file, the model's own template, else the built-in one."""
        variables = {**self.default_variables(), **special_token_variables(source)}
        if "chat_template" in options:
            value = options["chat_template"]
            path = Path(str(value)).expanduser()
            if not isinstance(value, str) or not path.is_file():
                raise ConfigError(f"adapter option chat_template must name an existing Jinja file, got {value!r}")
            return ChatTemplate(path.read_text(encoding="utf-8"), variables, origin=f"chat template {path}")
        text = source.chat_template or self.builtin_template()
        if text is None:
            raise AdapterError(
                f"the {self.name} adapter found no chat template next to {source.program.path} (chat_template.jinja, "
                "or chat_template in processor_config.json / tokenizer_config.json); copy the model's processor "
                'files next to the .pte or pass the adapter option chat_template = "path.jinja"'
            )
        origin = f"{self.name} chat template" + ("" if source.chat_template else " (built in)")
        return ChatTemplate(text, variables, origin=origin)

    def resolve_placeholder(
        self, source: ModelSource, tokenizer: Tokenizer, token: str, per_item: int, options: Mapping[str, Any]
    ) -> Placeholder:
        """The placeholder `token`'s id (checked against the program's metadata) and per-item count."""
        found = token_id(tokenizer, token)
        declared = source.constant(_CONSTANT_OF[self.modality])
        for key in _CONFIG_KEYS[self.modality]:
            if declared is None and isinstance(source.config.get(key), int):
                declared = source.config[key]
        if found is None:
            raise AdapterError(
                f"the {self.name} adapter's {self.modality} placeholder {token!r} is not one token of this "
                "tokenizer; use the tokenizer the model was exported with"
            )
        if declared is not None and int(declared) != found:
            raise AdapterError(
                f"the program declares {self.modality} token id {declared} but the tokenizer encodes {token!r} as "
                f"{found}; use the tokenizer the model was exported with"
            )
        override = int_option(options, "tokens_per_item")
        return Placeholder(token, found, override if override is not None else per_item)

    def encoder_rows(self, source: ModelSource) -> int | None:
        """Rows the encoder's output declares per call (its upper bound when dynamic)."""
        spec = source.method_spec(ENCODER_OF[self.modality])
        output = spec.outputs[0] if spec is not None and spec.outputs else None
        return output.shape[1] if output is not None and output.rank == 3 else None
