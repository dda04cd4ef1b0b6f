"""The exceptions mmcore raises.

Every message names the thing at fault, what was expected, what was found and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "MMCoreError",
    "ProgramError",
    "InvalidProgramError",
    "MissingMethodError",
    "MissingKernelError",
    "RuntimeUnavailableError",
    "MissingMetadataError",
    "ExecutionError",
    "TokenizerError",
    "ConfigError",
    "PluginError",
    "UnsupportedInputError",
    "InvalidInputError",
    "ContextOverflowError",
    "RunnerStateError",
    "AdapterError",
    "UnknownAdapterError",
    "AmbiguousAdapterError",
    "MediaLimitError",
    "PlaceholderMismatchError",
    "ConstraintError",
    "MediaNotFoundError",
]


class MMCoreError(Exception):
    """Base class of every error mmcore raises on purpose."""


class ProgramError(MMCoreError):
    """A `.pte` program cannot be used as an LLM program."""


class InvalidProgramError(ProgramError):
    """The file is not a loadable ExecuTorch program (wrong format, truncated, unreadable)."""


class MissingMethodError(ProgramError):
    """The program lacks a method the runner needs (e.g. `text_decoder`)."""


class MissingKernelError(ProgramError):
    """The program uses operators no loadable kernel library registers (the message names them and the fix)."""


class RuntimeUnavailableError(MMCoreError):
    """No way to run programs here: mmcore's native extension is unusable and torch (which ExecuTorch's
    Python bindings need) is not installed."""


class MissingMetadataError(ProgramError):
    """The program lacks a required constant metadata method (e.g. `get_max_seq_len`)."""


class ExecutionError(ProgramError):
    """Executing a program method failed (wrong input shape or dtype, backend error)."""


class TokenizerError(MMCoreError):
    """A tokenizer cannot be loaded, or does not fit the program."""


class ConfigError(MMCoreError, ValueError):
    """A configuration value is invalid; the message names the field."""


class PluginError(MMCoreError):
    """A plugin failed to load or register, or registered something invalid."""


class UnsupportedInputError(MMCoreError, TypeError):
    """No installed plugin handles an input of this type."""


class InvalidInputError(MMCoreError, ValueError):
    """An input is of a handled type but its value cannot be used."""


class ContextOverflowError(MMCoreError):
    """A request does not fit the program's context window."""


class RunnerStateError(MMCoreError):
    """The runner cannot do this in its current state (e.g. `generate` with nothing prefilled)."""


class AdapterError(MMCoreError):
    """A model adapter cannot be chosen, configured or applied."""


class UnknownAdapterError(AdapterError, ConfigError):
    """No installed adapter has the requested name."""


class AmbiguousAdapterError(AdapterError):
    """Several installed adapters recognise a program; one must be named."""


class MediaLimitError(InvalidInputError):
    """A conversation holds more media items than the model accepts."""


class PlaceholderMismatchError(InvalidInputError):
    """An encoder produced a different number of rows than the prompt reserved placeholder tokens for."""


class ConstraintError(ConfigError):
    """A response format (JSON Schema, regex, grammar, tool call) is malformed, uses something the
    constrained-decoding library does not support, cannot be satisfied, or cannot be used with this
    tokenizer."""


class MediaNotFoundError(InvalidInputError):
    """A content part names a local media file that does not exist."""
