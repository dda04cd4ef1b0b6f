"""Model adapters: what a family of programs needs beyond the ExecuTorch contract.

An adapter recognises a program (its methods, metadata constants and the Hugging Face files next to
it) and says how to run it: the preprocessing settings of each modality, how a chat is rendered
into ordered runner inputs, which extra tokens stop generation, and how many placeholder tokens a
media item takes. Adapters come from plugins (`mmcore_register_adapters`); `detect_adapter` picks
the one that recognises a program, or says which candidates compete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mmcore import constants as C
from mmcore.chat import Message, Renderer
from mmcore.errors import (
    AdapterError,
    AmbiguousAdapterError,
    ConfigError,
    ContextOverflowError,
    MediaLimitError,
    PlaceholderMismatchError,
    PluginError,
    UnknownAdapterError,
)
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.program import MethodSpec, Program
from mmcore.registry import ModalityRegistry
from mmcore.tokenizer import Tokenizer

if TYPE_CHECKING:
    from mmcore.runner import MultimodalRunner

__all__ = [
    "AdapterRegistrar",
    "AdapterRegistry",
    "Detection",
    "MediaEncoder",
    "MediaSpan",
    "ModelAdapter",
    "ModelProfile",
    "ModelSource",
    "PromptRenderer",
    "RenderedPrompt",
    "RendererContext",
    "RunnerMediaEncoder",
    "check_media_limits",
    "check_prompt_fits",
    "detect_adapter",
    "media_kinds",
    "merge_settings",
    "HF_FILES",
]

#: Hugging Face files next to a program that adapters read (`ModelSource.json(name)`).
HF_FILES = (
    "config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.json",
)
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


class ModelSource:
    """What an adapter may look at to recognise and configure a program.

    `folder` is the program's directory, where exporters leave the model's `config.json`,
    tokenizer and processor files. Files and metadata constants are read lazily, once.
    """

    def __init__(self, program: Program, *, folder: Path | None = None, tokenizer_path: Path | None = None) -> None:
        self.program = program
        self.folder = Path(folder) if folder is not None else program.path.parent
        self.tokenizer_path = tokenizer_path
        self._json: dict[str, dict[str, Any] | None] = {}

    @property
    def method_names(self) -> frozenset[str]:
        return self.program.method_names

    def has_method(self, name: str) -> bool:
        return self.program.has_method(name)

    def method_spec(self, name: str) -> MethodSpec | None:
        """The signature of method `name`, or None when the program lacks it."""
        return self.program.method_spec(name) if self.program.has_method(name) else None

    def constant(self, name: str, default: Any = None) -> Any:
        """A metadata constant (zero-input method such as `modality`, `vision_token_id`), or `default`."""
        if name not in self.program.metadata_names:
            return default
        return self.program.constant(name)

    def file(self, name: str) -> Path | None:
        """`name` in the program's folder (or the tokenizer directory), if it exists."""
        for folder in self._folders:
            path = folder / name
            if path.is_file():
                return path
        return None

    def json(self, name: str) -> dict[str, Any] | None:
        """A JSON object file next to the program (e.g. ``"config.json"``), or None when absent.

        Raises `AdapterError` when the file exists but is not a JSON object.
        """
        if name not in self._json:
            path = self.file(name)
            self._json[name] = _read_json(path) if path is not None else None
        return self._json[name]

    @property
    def config(self) -> dict[str, Any]:
        """`config.json` (empty when absent)."""
        return self.json("config.json") or {}

    @property
    def model_type(self) -> str | None:
        """`config.json`'s `model_type`, if any."""
        value = self.config.get("model_type")
        return value if isinstance(value, str) else None

    @property
    def processor_class(self) -> str | None:
        """The `processor_class` named by `processor_config.json` or `preprocessor_config.json`."""
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
            value = (self.json(name) or {}).get("processor_class")
            if isinstance(value, str):
                return value
        return None

    @cached_property
    def chat_template(self) -> str | None:
        """The model's chat template: `chat_template.jinja`, `chat_template.json`, then the
        `chat_template` key of `processor_config.json` or `tokenizer_config.json`."""
        path = self.file("chat_template.jinja")
        if path is not None:
            return path.read_text(encoding="utf-8")
        for name in ("chat_template.json", "processor_config.json", "tokenizer_config.json"):
            value = (self.json(name) or {}).get("chat_template")
            if isinstance(value, str):
                return value
            if isinstance(value, list):  # [{"name": "default", "template": ...}, ...]
                named = {t.get("name"): t.get("template") for t in value if isinstance(t, Mapping)}
                default = named.get("default")
                if isinstance(default, str):
                    return default
        return None

    @property
    def _folders(self) -> list[Path]:
        folders = [self.folder]
        if self.tokenizer_path is not None:
            tok_dir = self.tokenizer_path if self.tokenizer_path.is_dir() else self.tokenizer_path.parent
            if tok_dir != self.folder:
                folders.append(tok_dir)
        return folders

    def __repr__(self) -> str:
        return f"ModelSource({str(self.program.path)!r})"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"cannot read {path}: {exc}; fix or remove the file (model adapters read it)") from exc
    if not isinstance(value, dict):
        raise AdapterError(f"{path} holds a {type(value).__name__}, expected a JSON object; fix or remove the file")
    return value


@dataclass(frozen=True)
class MediaSpan:
    """One media item of a rendered prompt.

    Fields:
        kind: the modality ("image", "audio").
        item: the runner input (what the modality plugin takes).
        length: placeholder tokens reserved for it (the encoder must produce this many rows), or
            None when the prompt does not fix it.
        placeholder_id: the placeholder token id, or None when the program has none (media
            embeddings then sit between text segments).
    """

    kind: str
    item: Any
    length: int | None
    placeholder_id: int | None = None


@dataclass(frozen=True)
class RenderedPrompt:
    """A conversation rendered for a program: token segments and media items, in order."""

    parts: tuple[TokensInput | MediaSpan, ...]

    @property
    def media(self) -> list[MediaSpan]:
        return [p for p in self.parts if isinstance(p, MediaSpan)]

    @property
    def ids(self) -> list[int]:
        """The prompt ids with every media item as its run of placeholder ids (as a HF processor gives).

        Raises `AdapterError` when a media item has no placeholder id or no fixed length.
        """
        out: list[int] = []
        for part in self.parts:
            if isinstance(part, TokensInput):
                out.extend(part.ids)
            elif part.placeholder_id is None or part.length is None:
                raise AdapterError(
                    f"this prompt's {part.kind} items have no placeholder tokens (the program takes their "
                    "embeddings between text segments), so it has no single id sequence; use .parts"
                )
            else:
                out.extend([part.placeholder_id] * part.length)
        return out

    def inputs(self) -> list[Any]:
        """Ordered runner inputs: `TokensInput` segments and media items (for the modality plugins)."""
        return [p if isinstance(p, TokensInput) else p.item for p in self.parts]

    def __len__(self) -> int:
        return sum(len(p) if isinstance(p, TokensInput) else (p.length or 0) for p in self.parts)


class MediaEncoder(Protocol):
    """Runs one media item through its modality plugin and encoder."""

    def __call__(self, span: MediaSpan, *, where: str) -> EmbeddingsInput:
        """Embeddings `[1, N, D]` of `span.item`; `PlaceholderMismatchError` unless N == `span.length`."""


class RunnerMediaEncoder:
    """Encodes media with a `MultimodalRunner`'s prefiller (and so its encoder cache), checking rows."""

    def __init__(self, runner: MultimodalRunner) -> None:
        self.runner = runner

    def __call__(self, span: MediaSpan, *, where: str) -> EmbeddingsInput:
        runner = self.runner
        runner.load()
        [segment] = runner.prefiller.prepare([span.item], start_pos=1, bos_id=None)
        if not isinstance(segment, EmbeddingsInput):
            raise AdapterError(f"{where}: the {span.kind} plugin returned token ids where embeddings were expected")
        rows = len(segment)
        if span.length is not None and rows != span.length:
            raise PlaceholderMismatchError(
                f"{where}: the prompt reserves {span.length} placeholder tokens for this {span.kind} but the "
                f"encoder produced {rows} rows; the adapter's tokens per {span.kind} do not fit this program "
                "(check the processor files next to the .pte, or the adapter's options)"
            )
        return segment


@dataclass(frozen=True)
class RendererContext:
    """What a renderer is built with: the modality plugins and, when bound to a runner, an encoder."""

    registry: ModalityRegistry
    encoder: MediaEncoder | None = None
    #: The program's context length: a prompt that fills it is refused before any media is encoded.
    max_positions: int | None = None


@runtime_checkable
class PromptRenderer(Renderer, Protocol):
    """A `Renderer` that can also show the prompt it renders, before any encoder runs."""

    def render_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> RenderedPrompt:
        """Token segments and media spans of the conversation."""


@dataclass(frozen=True)
class ModelProfile:
    """How to run one program, as its adapter configured it.

    Fields:
        adapter: the adapter's name.
        modality_settings: settings per modality ("image", "audio"), from the model's processor
            files or the adapter's defaults; config tables and `--set` override them.
        stop_token_ids: ids that end generation besides the tokenizer's and program's EOS.
        tokens_per_item: placeholder tokens per image / per audio window, per modality.
        max_items: the most items of a modality one conversation may hold (declared limits only).
        make_renderer: builds the chat renderer.
        notes: facts worth showing in `mmcore inspect` (position form, unsupported features).
        media_token_id: for decoders taking token ids and embeddings together
            (`mmcore.joint_decoder`), the id their `input_ids` carry at media rows.
    """

    adapter: str
    make_renderer: Callable[[RendererContext], Renderer]
    modality_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stop_token_ids: frozenset[int] = frozenset()
    tokens_per_item: Mapping[str, int] = field(default_factory=dict)
    max_items: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    media_token_id: int | None = None


@runtime_checkable
class ModelAdapter(Protocol):
    """Recognises a family of programs and configures how to run them.

    Attributes:
        name: the adapter's name (``--adapter NAME``, ``adapter = "NAME"``).
        description: one line for listings.
        fallback: True for catch-all adapters, considered only when no other adapter recognises
            the program (the built-in ``generic``).
        options: option keys accepted in the ``[adapter]`` config table, with a description each.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def fallback(self) -> bool: ...

    @property
    def options(self) -> Mapping[str, str]: ...

    def detect(self, source: ModelSource) -> str | None:
        """Why this adapter recognises the program (shown to users), or None when it does not."""

    def configure(self, source: ModelSource, tokenizer: Tokenizer, options: Mapping[str, Any]) -> ModelProfile:
        """The profile of this program; `options` were checked against `options` keys already."""


@dataclass(frozen=True)
class Detection:
    """The result of auto-detection: the adapter chosen and why."""

    adapter: ModelAdapter
    reason: str
    candidates: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Entry:
    adapter: ModelAdapter
    plugin: str


class AdapterRegistry:
    """Adapter name -> adapter, with the plugin that registered each."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Entry] = {}

    def add(self, adapter: ModelAdapter, *, plugin: str) -> None:
        """Register `adapter` on behalf of `plugin`."""
        missing = [a for a in ("name", "fallback", "options", "detect", "configure") if not hasattr(adapter, a)]
        if missing:
            raise PluginError(f"plugin '{plugin}' registered a model adapter without {missing}")
        name = adapter.name
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{plugin}' registered a model adapter with an empty or non-string name")
        existing = self._by_name.get(name)
        if existing is not None:
            raise PluginError(
                f"plugin '{plugin}' registered adapter '{name}', already registered by plugin "
                f"'{existing.plugin}'; block one of them (MMCORE_BLOCK_PLUGINS)"
            )
        self._by_name[name] = _Entry(adapter, plugin)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    @property
    def adapters(self) -> list[ModelAdapter]:
        return [self._by_name[n].adapter for n in self.names()]

    def plugin_of(self, name: str) -> str | None:
        entry = self._by_name.get(name)
        return entry.plugin if entry else None

    def get(self, name: str) -> ModelAdapter:
        """The adapter called `name`; `UnknownAdapterError` listing the installed ones otherwise."""
        entry = self._by_name.get(name)
        if entry is None:
            installed = ", ".join(self.names()) or "none (pip install mmcore-adapters)"
            raise UnknownAdapterError(
                f"no installed adapter is called {name!r}; installed adapters: {installed}. "
                'Pass one of them (--adapter NAME, adapter = "NAME" in the config) or install the package '
                "that provides it"
            )
        return entry.adapter

    def check_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """`options` as a dict; `ConfigError` naming unknown keys and the accepted ones."""
        adapter = self.get(name)
        unknown = sorted(set(options) - set(adapter.options))
        if unknown:
            accepted = sorted(adapter.options) or "none"
            raise ConfigError(f"unknown option(s) adapter.{unknown[0]} for adapter '{name}'; it accepts: {accepted}")
        return dict(options)


class AdapterRegistrar:
    """The adapter registry as one plugin sees it in `mmcore_register_adapters`."""

    def __init__(self, registry: AdapterRegistry, plugin: str | Callable[[], str]) -> None:
        self._registry = registry
        self._plugin = plugin

    @property
    def plugin(self) -> str:
        """The plugin whose hook implementation is registering."""
        return self._plugin() if callable(self._plugin) else self._plugin

    def add(self, adapter: ModelAdapter) -> None:
        """Register a model adapter."""
        self._registry.add(adapter, plugin=self.plugin)


def detect_adapter(source: ModelSource, registry: AdapterRegistry) -> Detection:
    """The adapter that recognises `source`: the only specific one, else a fallback.

    Raises `AmbiguousAdapterError` listing the candidates when several specific adapters
    recognise the program, and `AdapterError` when none (not even a fallback) does.
    """
    specific: list[tuple[ModelAdapter, str]] = []
    fallbacks: list[tuple[ModelAdapter, str]] = []
    for adapter in registry.adapters:
        reason = adapter.detect(source)
        if reason:
            (fallbacks if adapter.fallback else specific).append((adapter, reason))
    candidates = tuple((a.name, r) for a, r in (*specific, *fallbacks))
    if len(specific) == 1:
        return Detection(specific[0][0], specific[0][1], candidates)
    if len(specific) > 1:
        listing = "; ".join(f"{a.name} ({r})" for a, r in specific)
        raise AmbiguousAdapterError(
            f"several adapters recognise {source.program.path}: {listing}. Choose one with --adapter NAME "
            '(or adapter = "NAME" in the config file)'
        )
    if fallbacks:
        return Detection(fallbacks[0][0], fallbacks[0][1], candidates)
    installed = ", ".join(registry.names()) or "none (pip install mmcore-adapters)"
    raise AdapterError(
        f"no installed adapter recognises {source.program.path} (installed: {installed}); name one with "
        "--adapter NAME, or install an adapter package for this model family"
    )


def check_prompt_fits(prompt: RenderedPrompt, max_positions: int | None, *, program: str | os.PathLike[str]) -> None:
    """`ContextOverflowError` when `prompt` leaves no position to generate in `max_positions`, naming
    what its media take (checked before any encoder runs)."""
    if max_positions is None or len(prompt) < max_positions:
        return
    counts: dict[str, list[int]] = {}
    for span in prompt.media:
        calls, tokens = counts.setdefault(span.kind, [0, 0])
        counts[span.kind] = [calls + 1, tokens + (span.length or 0)]
    media = ", ".join(
        f"{calls} {kind} encoder call{'s' if calls != 1 else ''} with {tokens} placeholder tokens"
        for kind, (calls, tokens) in counts.items()
    )
    taken = f" ({media})" if media else ""
    raise ContextOverflowError(
        f"{program}: the prompt needs {len(prompt)} positions{taken} but the program's context holds "
        f"{max_positions} (leaving none to generate); send fewer or smaller media items, or export with a "
        "longer max_length (`mmcore inspect PROGRAM --image-size WxH` shows what one image takes)"
    )


def check_media_limits(prompt: RenderedPrompt, limits: Mapping[str, int], *, program: str | os.PathLike[str]) -> None:
    """`MediaLimitError` when the prompt holds more items of a modality than `limits` allows."""
    counts: dict[str, int] = {}
    for span in prompt.media:
        counts[span.kind] = counts.get(span.kind, 0) + 1
    for kind, count in counts.items():
        limit = limits.get(kind)
        if limit is not None and count > limit:
            raise MediaLimitError(
                f"the conversation holds {count} {kind} items but {program} takes at most {limit} per "
                f"conversation; send fewer {kind}s (or start a new conversation)"
            )


def media_kinds(program: Program) -> list[str]:
    """The modalities a program encodes, from its encoder methods."""
    kinds = []
    if program.has_method(C.VISION_ENCODER):
        kinds.append("image")
    if program.has_method(C.AUDIO_ENCODER):
        kinds.append("audio")
    return kinds


def merge_settings(
    base: Mapping[str, Mapping[str, Any]], overrides: Iterable[tuple[str, Mapping[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """`base` settings per modality with `overrides` applied key by key."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in overrides:
        merged.setdefault(name, {}).update(values)
    return merged
