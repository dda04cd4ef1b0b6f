"""Registries that map input types to modality handlers and hold tokenizer loaders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mmcore.errors import PluginError, UnsupportedInputError
from mmcore.inputs import EmbeddingsInput, TokensInput

if TYPE_CHECKING:
    from mmcore.program import Program
    from mmcore.tokenizer import Tokenizer, TokenizerLoader

__all__ = [
    "PrefillContext",
    "ModalityHandler",
    "ModalityRegistry",
    "ModalityRegistrar",
    "TokenizerRegistrar",
    "PrefillOutput",
    "SettingsKey",
]

PrefillOutput = TokensInput | EmbeddingsInput
#: A settings mapping frozen into sorted (key, value) pairs, nested mappings and lists too.
SettingsKey = tuple[tuple[str, Any], ...]

# Which package handles inputs of a module's types, for "install X" hints.
_INSTALL_HINTS: dict[str, str] = {
    "PIL": "mmcore-image",
    "mmcore_image": "mmcore-image",
    "mmcore_audio": "mmcore-audio",
    "mmcore_text": "mmcore-text",
    "builtins.str": "mmcore-text",
    "numpy": "mmcore-image (images) or mmcore-audio (audio)",
    "torch": "mmcore-image (images) or mmcore-audio (audio)",
}


@dataclass(frozen=True)
class PrefillContext:
    """What a modality handler may use to turn one input into tokens or embeddings.

    Fields:
        program: the loaded program (encoder methods, their input specs, metadata).
        tokenizer: the runner's tokenizer, if it has one.
        settings: this modality's settings (from the model adapter or the config).
        num_bos: BOS ids a text handler puts before this input.
        num_eos: EOS ids a text handler puts after this input.
        index: position of this input in the request, for error messages.
    """

    program: Program
    tokenizer: Tokenizer | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    num_bos: int = 0
    num_eos: int = 0
    index: int = 0

    @property
    def settings_key(self) -> SettingsKey:
        """`settings` as a hashable value, for handlers that keep state per settings."""
        return _freeze(self.settings)


@runtime_checkable
class ModalityHandler(Protocol):
    """Turns inputs of some types into token ids or embeddings `[1, T, D]`.

    `name` is the modality (``"image"``); the CLI offers ``--<name> VALUE`` when the handler has a
    `parse_cli(value: str)` method.
    """

    name: str
    input_types: tuple[type, ...]

    def preprocess(self, item: Any, ctx: PrefillContext) -> Any:
        """Decode and normalise a raw input into what `prefill` consumes (e.g. a pixel array).

        Return a numpy array when the result is an encoder input: the encoder cache keys numpy
        arrays (and torch tensors) by content, and `Program.execute` takes them as they are.
        A torch tensor is accepted and converted where it is used; returning one imports torch.
        """

    def prefill(self, prepared: Any, ctx: PrefillContext) -> PrefillOutput:
        """Token ids (`TokensInput`), or embeddings from this modality's encoder method
        (`EmbeddingsInput` of a numpy array `[1, T, D]`, any float dtype, bfloat16 as
        `ml_dtypes.bfloat16`; a torch tensor is converted to numpy when the input is made).
        `ctx.program.method(name).execute([...])` takes numpy arrays and returns numpy arrays."""


@dataclass(frozen=True)
class _Entry:
    handler: ModalityHandler
    plugin: str


class ModalityRegistry:
    """Input type -> modality handler, resolved by a dict lookup."""

    def __init__(self) -> None:
        self._by_type: dict[type, _Entry] = {}
        self._by_name: dict[str, _Entry] = {}
        self._resolved: dict[type, ModalityHandler | None] = {}

    def add(self, handler: ModalityHandler, *, plugin: str) -> None:
        """Register `handler` for its input types on behalf of `plugin`."""
        _check_handler(handler, plugin)
        for input_type in handler.input_types:
            if input_type in (TokensInput, EmbeddingsInput):
                raise PluginError(f"plugin '{plugin}' registered {input_type.__name__}, which the core handles itself")
            existing = self._by_type.get(input_type)
            if existing is not None:
                raise PluginError(
                    f"plugin '{plugin}' registered a handler for {_type_name(input_type)}, which "
                    f"plugin '{existing.plugin}' already handles; block one of them (MMCORE_BLOCK_PLUGINS)"
                )
        if handler.name in self._by_name:
            other = self._by_name[handler.name].plugin
            raise PluginError(
                f"plugin '{plugin}' registered modality '{handler.name}', already registered by plugin '{other}'"
            )
        entry = _Entry(handler, plugin)
        self._by_name[handler.name] = entry
        for input_type in handler.input_types:
            self._by_type[input_type] = entry
        self._resolved.clear()

    def handler_for(self, item: Any) -> ModalityHandler:
        """The handler of `item`'s type (or nearest base type); `UnsupportedInputError` if none."""
        item_type = type(item)
        try:
            handler = self._resolved[item_type]
        except KeyError:
            handler = self._resolve(item_type)
            self._resolved[item_type] = handler
        if handler is None:
            raise UnsupportedInputError(_unsupported_message(item_type, self.input_types()))
        return handler

    def get(self, name: str) -> ModalityHandler | None:
        """The handler of modality `name`, if registered."""
        entry = self._by_name.get(name)
        return entry.handler if entry else None

    def plugin_of(self, name: str) -> str | None:
        entry = self._by_name.get(name)
        return entry.plugin if entry else None

    @property
    def handlers(self) -> list[ModalityHandler]:
        return [e.handler for e in self._by_name.values()]

    def input_types(self) -> list[type]:
        return list(self._by_type)

    def _resolve(self, item_type: type) -> ModalityHandler | None:
        for base in item_type.__mro__:
            entry = self._by_type.get(base)
            if entry is not None:
                return entry.handler
        return None


class ModalityRegistrar:
    """The registry as one plugin sees it in `mmcore_register_modalities`."""

    def __init__(self, registry: ModalityRegistry, plugin: str | Callable[[], str]) -> None:
        self._registry = registry
        self._plugin = plugin

    @property
    def plugin(self) -> str:
        """The plugin whose hook implementation is registering."""
        return self._plugin() if callable(self._plugin) else self._plugin

    def add(self, handler: ModalityHandler) -> None:
        """Register a modality handler."""
        self._registry.add(handler, plugin=self.plugin)


class TokenizerRegistrar:
    """The tokenizer-loader list as one plugin sees it in `mmcore_register_tokenizers`."""

    def __init__(
        self,
        primary: list[TokenizerLoader],
        fallbacks: list[TokenizerLoader],
        plugin: str | Callable[[], str],
        owners: dict[int, str] | None = None,
    ):
        self._primary = primary
        self._fallbacks = fallbacks
        self._plugin = plugin
        self._owners = owners

    @property
    def plugin(self) -> str:
        """The plugin whose hook implementation is registering."""
        return self._plugin() if callable(self._plugin) else self._plugin

    def add(self, loader: TokenizerLoader, *, fallback: bool = False) -> None:
        """Register a tokenizer loader; fallbacks are tried after every other loader."""
        for attr in ("name", "can_load", "load"):
            if not hasattr(loader, attr):
                raise PluginError(f"plugin '{self.plugin}' registered a tokenizer loader without '{attr}'")
        (self._fallbacks if fallback else self._primary).append(loader)
        if self._owners is not None:
            self._owners[id(loader)] = self.plugin


def _check_handler(handler: Any, plugin: str) -> None:
    missing = [a for a in ("name", "input_types", "preprocess", "prefill") if not hasattr(handler, a)]
    if missing:
        raise PluginError(f"plugin '{plugin}' registered a modality handler without {missing}")
    types = handler.input_types
    if not isinstance(types, Sequence) or not types or not all(isinstance(t, type) for t in types):
        raise PluginError(f"plugin '{plugin}': handler '{handler.name}' input_types must be a non-empty tuple of types")


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def _unsupported_message(item_type: type, known: list[type]) -> str:
    full = f"{item_type.__module__}.{item_type.__qualname__}"
    hint = _INSTALL_HINTS.get(full) or _INSTALL_HINTS.get(item_type.__module__.split(".")[0])
    handled = ", ".join(sorted({_type_name(t) for t in known} | {"TokensInput", "EmbeddingsInput"}))
    message = f"no installed plugin handles inputs of type {_type_name(item_type)}"
    if hint:
        message += f" (install {hint}: pip install {hint.split(' ')[0]})"
    return f"{message}; handled input types: {handled}"


def _freeze(settings: Mapping[str, Any]) -> SettingsKey:
    return tuple(sorted((key, _hashable(value)) for key, value in settings.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _freeze(value)
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value
