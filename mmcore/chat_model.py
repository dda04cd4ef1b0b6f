"""`open_model`: a program, its tokenizer and its adapter, ready to answer chat messages."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmcore import constants as C
from mmcore.adapters import (
    Detection,
    ModelAdapter,
    ModelProfile,
    ModelSource,
    PromptRenderer,
    RenderedPrompt,
    RendererContext,
    RunnerMediaEncoder,
    detect_adapter,
    merge_settings,
)
from mmcore.assemble import RunnerConfig, load_config, with_overrides
from mmcore.chat import Message, Renderer
from mmcore.config import GenerationConfig
from mmcore.errors import AdapterError, ConfigError, ProgramError
from mmcore.generation_defaults import read_generation_defaults
from mmcore.plugins import PluginManager, get_plugin_manager
from mmcore.program import Program
from mmcore.runner import GenerationResult, MultimodalRunner, PieceCallback, TokenCallback
from mmcore.session import ContextPolicy, Session, encoder_cache_counts, encoder_cache_delta
from mmcore.tokenizer import Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from mmcore.image_plan import ImagePlan

__all__ = ["ChatModel", "open_model", "build_chat_model", "AUTO"]

#: The adapter name that asks for detection.
AUTO = "auto"
PathLike = str | os.PathLike[str]


class ChatModel:
    """A multimodal program with its adapter: chat messages in, generated tokens out.

    Attributes:
        runner: the `MultimodalRunner` (adapter settings and stop tokens applied).
        adapter: the adapter in use; `detection` says why it was chosen.
        profile: what the adapter configured (settings, placeholders, limits, notes).
        renderer: renders conversations into runner inputs (media encoded and checked).
    """

    def __init__(
        self,
        runner: MultimodalRunner,
        adapter: ModelAdapter,
        profile: ModelProfile,
        renderer: Renderer,
        detection: Detection,
        source: ModelSource,
    ) -> None:
        self.runner = runner
        self.adapter = adapter
        self.profile = profile
        self.renderer = renderer
        self.detection = detection
        self.source = source

    @property
    def name(self) -> str:
        """The adapter's name."""
        return self.adapter.name

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> RenderedPrompt:
        """The prompt the conversation renders to (token segments and media), before any encoder runs."""
        if not isinstance(self.renderer, PromptRenderer):
            raise AdapterError(
                f"the '{self.name}' adapter renders parts in order without a token prompt; use chat() or inputs()"
            )
        return self.renderer.render_prompt(messages, add_generation_prompt=add_generation_prompt)

    def plan_image(self, width: int, height: int) -> ImagePlan:
        """What one image of `width` x `height` pixels takes in this model's prompts (encoder calls,
        placeholder and prompt tokens, how many fit the context), without encoding anything."""
        from mmcore.image_plan import plan_image

        return plan_image(
            self.renderer,
            width,
            height,
            context=self.runner.metadata.max_context_len,
            tokens_per_image=self.profile.tokens_per_item.get("image"),
            max_images=self.profile.max_items.get("image"),
        )

    def inputs(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[Any]:
        """The ordered runner inputs of a conversation (media already encoded and checked)."""
        return self.renderer.render(messages, add_generation_prompt=add_generation_prompt)

    def chat(
        self,
        messages: Sequence[Message],
        config: GenerationConfig | None = None,
        token_callback: TokenCallback | None = None,
        *,
        piece_callback: PieceCallback | None = None,
    ) -> GenerationResult:
        """Answer a whole conversation from scratch (the KV cache is reset first)."""
        config = config if config is not None else self.runner.generation_config
        if isinstance(self.renderer, PromptRenderer):  # the rendered prompt carries its own BOS
            config = config.replace(num_bos=0, num_eos=0)
        counted = encoder_cache_counts(self.runner)  # the renderer encodes the media
        inputs = self.inputs(messages, add_generation_prompt=True)  # a prompt too long is refused here
        self.runner.reset()
        result = self.runner.generate(inputs, config, token_callback, piece_callback=piece_callback)
        result.stats.extra.update(encoder_cache_delta(self.runner, counted))
        return result

    def session(self, *, context_policy: ContextPolicy = "error", system: str | None = None) -> Session:
        """A multi-turn `Session` that renders with this model's adapter."""
        return Session(self.runner, renderer=self.renderer, context_policy=context_policy, system=system)

    def __repr__(self) -> str:
        return f"ChatModel({str(self.runner.program.path)!r}, adapter={self.name!r})"


def open_model(
    program: PathLike | Mapping[str, Any] | RunnerConfig,
    *,
    adapter: str | None = None,
    adapter_options: Mapping[str, Any] | None = None,
    tokenizer: PathLike | None = None,
    data_path: PathLike | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    generation: GenerationConfig | None = None,
    plugin_manager: PluginManager | None = None,
) -> ChatModel:
    """Open a `.pte` program (or a TOML config / parsed config) as a `ChatModel`.

    The adapter is `adapter` (a name), else the config's `adapter`, else detected from the program
    and the files next to it. `settings` (per modality) override the adapter's preprocessing;
    `tokenizer` defaults to the program's folder.
    """
    pm = plugin_manager or get_plugin_manager()
    if isinstance(program, RunnerConfig):
        config = program
    else:
        config = _load_config(program, pm)
        defaults = read_generation_defaults(config.program.parent) if generation is None else None
        if defaults is not None:  # the model's file under the config's own [generation] keys
            config = _load_config(program, pm, defaults.apply(GenerationConfig()))
    config = with_overrides(config, tokenizer=tokenizer, modalities=settings, plugin_manager=pm)
    changes: dict[str, Any] = {}
    if adapter is not None:
        changes["adapter"] = adapter
    if adapter_options is not None:
        changes["adapter_options"] = dict(adapter_options)
    if data_path is not None:
        changes["data_path"] = Path(data_path)
    if generation is not None:
        changes["generation"] = generation
    return build_chat_model(dataclasses.replace(config, **changes), plugin_manager=pm)


def _load_config(
    program: PathLike | Mapping[str, Any], pm: PluginManager, generation_base: GenerationConfig | None = None
) -> RunnerConfig:
    if isinstance(program, Mapping) or str(program).endswith(".toml"):
        return load_config(program, plugin_manager=pm, generation_base=generation_base)
    return load_config({"program": os.fspath(program)}, plugin_manager=pm, generation_base=generation_base)


def build_chat_model(
    config: RunnerConfig, *, plugin_manager: PluginManager | None = None, program: Program | None = None
) -> ChatModel:
    """The `ChatModel` of a validated config (adapter detected when the config names none); `program`
    is the config's program when the caller has already loaded it."""
    pm = plugin_manager or get_plugin_manager()
    if program is None:
        program = Program(config.program, data_path=config.data_path)
    if not program.has_method(C.TEXT_DECODER):
        raise ProgramError(
            f"{config.program} is a text-only program (no text_decoder); model adapters and chat rendering "
            "need a multimodal program. Run it with `mmcore run --raw` or mmcore.TextLLMRunner"
        )
    tokenizer = load_tokenizer(config.tokenizer, plugin_manager=pm)
    source = ModelSource(program, tokenizer_path=config.tokenizer)
    adapter, detection, profile = configure_adapter(source, tokenizer, config, pm)
    settings = merge_settings(profile.modality_settings, config.modalities.items())
    runner = MultimodalRunner(program, tokenizer, plugin_manager=pm, modality_settings=settings)
    runner.media_token_id = profile.media_token_id
    stop_ids = profile.stop_token_ids | _generation_eos_ids(source, tokenizer)
    if stop_ids:
        runner.metadata = dataclasses.replace(runner.metadata, eos_ids=runner.metadata.eos_ids | stop_ids)
    runner.generation_config = config.generation
    context = RendererContext(
        registry=pm.modality_registry(),
        encoder=RunnerMediaEncoder(runner),
        max_positions=runner.metadata.max_context_len,
    )
    return ChatModel(runner, adapter, profile, profile.make_renderer(context), detection, source)


def configure_adapter(
    source: ModelSource, tokenizer: Tokenizer, config: RunnerConfig, pm: PluginManager
) -> tuple[ModelAdapter, Detection, ModelProfile]:
    """The adapter the config names (or detection picks), why, and its profile of the program."""
    registry = pm.adapter_registry()
    if config.adapter is None or config.adapter == AUTO:
        detection = detect_adapter(source, registry)
    else:
        detection = Detection(registry.get(config.adapter), "named in the config or on the command line")
    adapter = detection.adapter
    options = registry.check_options(adapter.name, config.adapter_options)
    return adapter, detection, adapter.configure(source, tokenizer, options)


def _generation_eos_ids(source: ModelSource, tokenizer: Tokenizer) -> frozenset[int]:
    """The ``eos_token_id`` of the model's ``generation_config.json`` (checked against the vocabulary)."""
    defaults = read_generation_defaults(source.folder)
    if defaults is None:
        return frozenset()
    beyond = sorted(i for i in defaults.eos_token_ids if i >= tokenizer.vocab_size)
    if beyond:
        raise ConfigError(
            f"{defaults.path}: eos_token_id {beyond} is beyond the tokenizer's {tokenizer.vocab_size} tokens; "
            "fix or remove 'eos_token_id' in that file"
        )
    return defaults.eos_token_ids
