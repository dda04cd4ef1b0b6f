"""OpenAI's HTTP API as pydantic models: the request bodies mmcore serves and the bodies it answers.

Requests ignore fields they do not know (clients send many); fields mmcore cannot honour are
modelled so they are refused with a clear 400 rather than silently dropped.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "Choice",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionRequest",
    "CompletionResponse",
    "DeltaMessage",
    "ErrorBody",
    "ErrorEnvelope",
    "FunctionCall",
    "ModelCard",
    "ModelList",
    "PromptTokensDetails",
    "ResponseMessage",
    "StreamOptions",
    "TokenLogprob",
    "ToolCall",
    "TopLogprob",
    "Usage",
    "new_id",
]


def new_id(prefix: str) -> str:
    """A fresh response id such as ``chatcmpl-<hex>``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def _now() -> int:
    return int(time.time())


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests --------------------------------------------------------------------------------------
class FunctionCall(BaseModel):
    """A function call: its name and its arguments as a JSON string."""

    name: str | None = None
    arguments: str | None = None


class ToolCall(BaseModel):
    """One tool call of an assistant message (`index` only in stream deltas)."""

    index: int | None = None
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    """One message of a conversation; `content` is a string or a list of content parts."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """Sampling fields shared by chat and text completions (None: the model's default)."""

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0)
    n: int = Field(default=1, ge=1)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    #: mmcore extension: pin the conversation to one slot (also the ``X-Session-ID`` header).
    session_id: str | None = Field(default=None, max_length=256)
    #: extension (as vLLM and llama-server have it): keep generating past end-of-sequence tokens.
    ignore_eos: bool | None = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    def resolved_max_tokens(self) -> int | None:
        """`max_completion_tokens`, else `max_tokens` (None: up to the context)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions`` (a plain prompt, no chat template)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = None


# -- responses -------------------------------------------------------------------------------------
class PromptTokensDetails(_Body):
    cached_tokens: int = 0


class Usage(_Body):
    """Token counts; `prompt_tokens_details.cached_tokens` is the prompt prefix reused from the KV cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class TopLogprob(_Body):
    """One of a token's most likely alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(_Body):
    """A generated token, its log-probability and (with ``top_logprobs``) its alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(_Body):
    content: list[TokenLogprob] | None = None


class ResponseMessage(_Body):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(_Body):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionResponse(_Body):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    system_fingerprint: str | None = None


class DeltaMessage(_Body):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChunkChoice(_Body):
    index: int = 0
    delta: DeltaMessage
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_Body):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(_Body):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: dict[str, Any] | None = None


class CompletionResponse(_Body):
    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class CompletionChunk(CompletionResponse):
    """A streamed piece of a text completion (OpenAI streams these as ``text_completion`` objects)."""


class ModelCard(_Body):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "mmcore"
    #: Context size in tokens (the KV cache's positions), named as in vLLM's model cards.
    max_model_len: int | None = None


class ModelList(_Body):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(_Body):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(_Body):
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorBody
