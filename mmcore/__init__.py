"""mmcore: run multimodal LLMs exported as ExecuTorch `.pte` programs.

The public names are imported on first use (PEP 562), so `import mmcore` and the command's
start-up (`mmcore --help`, `mmcore plugins`) load neither the runtime nor its dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore._lazy import lazy_getattr
from mmcore.errors import (
    AdapterError,
    AmbiguousAdapterError,
    ConfigError,
    ContextOverflowError,
    ExecutionError,
    InvalidInputError,
    InvalidProgramError,
    MediaLimitError,
    MissingKernelError,
    MissingMetadataError,
    MissingMethodError,
    MMCoreError,
    PlaceholderMismatchError,
    PluginError,
    ProgramError,
    RunnerStateError,
    RuntimeUnavailableError,
    TokenizerError,
    UnknownAdapterError,
    UnsupportedInputError,
)
from mmcore.hookspecs import hookimpl

if TYPE_CHECKING:
    from mmcore.assemble import RunnerConfig, assemble, load_config
    from mmcore.chat_model import ChatModel, open_model
    from mmcore.config import GenerationConfig, resolve_max_new_tokens
    from mmcore.inputs import EmbeddingsInput, TokensInput
    from mmcore.metadata import LLMMetadata
    from mmcore.plugins import PluginManager, get_plugin_manager
    from mmcore.program import Program
    from mmcore.registry import ModalityHandler, PrefillContext
    from mmcore.runner import GenerationResult, IRunner, MultimodalRunner, Piece, TextLLMRunner
    from mmcore.session import Session
    from mmcore.stats import Stats
    from mmcore.tokenizer import Tokenizer, TokenizerLoader, load_tokenizer

__version__ = "0.1.0"

#: Where each lazily imported public name lives.
_LAZY = {
    "RunnerConfig": "mmcore.assemble",
    "assemble": "mmcore.assemble",
    "load_config": "mmcore.assemble",
    "ChatModel": "mmcore.chat_model",
    "open_model": "mmcore.chat_model",
    "GenerationConfig": "mmcore.config",
    "resolve_max_new_tokens": "mmcore.config",
    "EmbeddingsInput": "mmcore.inputs",
    "TokensInput": "mmcore.inputs",
    "LLMMetadata": "mmcore.metadata",
    "PluginManager": "mmcore.plugins",
    "get_plugin_manager": "mmcore.plugins",
    "Program": "mmcore.program",
    "ModalityHandler": "mmcore.registry",
    "PrefillContext": "mmcore.registry",
    "GenerationResult": "mmcore.runner",
    "IRunner": "mmcore.runner",
    "MultimodalRunner": "mmcore.runner",
    "Piece": "mmcore.runner",
    "TextLLMRunner": "mmcore.runner",
    "Session": "mmcore.session",
    "Stats": "mmcore.stats",
    "Tokenizer": "mmcore.tokenizer",
    "TokenizerLoader": "mmcore.tokenizer",
    "load_tokenizer": "mmcore.tokenizer",
}


__getattr__ = lazy_getattr("mmcore", _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AdapterError",
    "AmbiguousAdapterError",
    "ChatModel",
    "ConfigError",
    "GenerationResult",
    "IRunner",
    "MultimodalRunner",
    "Piece",
    "RunnerConfig",
    "Session",
    "Stats",
    "TextLLMRunner",
    "assemble",
    "load_config",
    "ContextOverflowError",
    "EmbeddingsInput",
    "ExecutionError",
    "GenerationConfig",
    "InvalidInputError",
    "InvalidProgramError",
    "LLMMetadata",
    "MMCoreError",
    "MediaLimitError",
    "MissingMetadataError",
    "MissingKernelError",
    "MissingMethodError",
    "ModalityHandler",
    "PlaceholderMismatchError",
    "PluginError",
    "PluginManager",
    "PrefillContext",
    "Program",
    "ProgramError",
    "RunnerStateError",
    "RuntimeUnavailableError",
    "Tokenizer",
    "TokenizerError",
    "TokenizerLoader",
    "TokensInput",
    "UnknownAdapterError",
    "UnsupportedInputError",
    "get_plugin_manager",
    "hookimpl",
    "load_tokenizer",
    "open_model",
    "resolve_max_new_tokens",
]
