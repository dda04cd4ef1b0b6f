"""mmcore: run multimodal LLMs exported as ExecuTorch `.pte` programs."""

from __future__ import annotations

from mmcore.assemble import RunnerConfig, assemble, load_config
from mmcore.chat_model import ChatModel, open_model
from mmcore.config import GenerationConfig, resolve_max_new_tokens
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
