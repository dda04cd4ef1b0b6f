"""The response body of one request: the one place a batch turns a request body into what
`mmcore serve` answers.

INTERIM: until `mmcore.serve.chat` (the server's in-process service) lands, `respond` renders the
chat completion itself; it is the single function to switch to the server's service.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.chat_model import ChatModel
from mmcore.config import GenerationConfig
from mmcore.errors import ConfigError, ContextOverflowError, InvalidInputError, MMCoreError, UnsupportedInputError

__all__ = ["Reply", "respond"]

_FINISH = {"eos": "stop", "stop_string": "stop", "length": "length", "stopped": "stop"}


@dataclass
class Reply:
    """What the endpoint answered: the HTTP status, the JSON body, and the generated token ids."""

    status_code: int
    body: dict[str, Any]
    token_ids: list[int] = field(default_factory=list)


def respond(model: ChatModel, url: str, body: Mapping[str, Any], *, media_dir: Path, model_id: str) -> Reply:
    """The server's answer to `body` posted to `url` (an error status carries OpenAI's envelope)."""
    try:
        config = _generation_config(body, model.runner.generation_config)
        if url == "/v1/completions":
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise InvalidInputError("'prompt' must be a string")
            model.runner.reset()
            result = model.runner.generate([prompt], config)
        else:
            messages = [_message(m, i, media_dir) for i, m in enumerate(_messages(body))]
            result = model.chat(messages, config)
    except (InvalidInputError, UnsupportedInputError, ConfigError) as exc:
        return _error(400, str(exc), "invalid_request_error", type(exc).__name__)
    except ContextOverflowError as exc:
        return _error(400, str(exc), "invalid_request_error", "context_length_exceeded")
    except MMCoreError as exc:
        return _error(500, str(exc), "server_error", type(exc).__name__)
    tokens = list(result.tokens)
    usage = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": len(tokens),
        "total_tokens": result.prompt_tokens + len(tokens),
    }
    finish = _FINISH.get(result.stop_reason, "stop")
    if url == "/v1/completions":
        choice: dict[str, Any] = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": finish}
        kind, prefix = "text_completion", "cmpl"
    else:
        message = {"role": "assistant", "content": result.text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        kind, prefix = "chat.completion", "chatcmpl"
    reply = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model_id,
             "choices": [choice], "usage": usage}  # fmt: skip
    return Reply(200, reply, tokens)


def _error(status: int, message: str, kind: str, code: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def _generation_config(body: Mapping[str, Any], base: GenerationConfig) -> GenerationConfig:
    changes: dict[str, Any] = {"echo": False}
    for name in ("temperature", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty"):
        if body.get(name) is not None:
            changes[name] = body[name]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        changes["max_new_tokens"] = limit
    stop = body.get("stop")
    if stop is not None:
        changes["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    return base.replace(**changes)


def _messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError("'messages' must be a non-empty list of {'role', 'content'} objects")
    return messages


def _message(message: Any, index: int, media_dir: Path) -> dict[str, Any]:
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise InvalidInputError(f"messages[{index}] must be an object with a 'role' and 'content'")
    content = message.get("content") or ""
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    if not isinstance(content, list):
        raise InvalidInputError(f"messages[{index}].content must be a string or a list of content parts")
    return {"role": message["role"], "content": [_part(p, f"messages[{index}].content[{n}]", media_dir)
                                                 for n, p in enumerate(content)]}  # fmt: skip


def _part(part: Any, where: str, media_dir: Path) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind == "text":
        return {"type": "text", "text": part.get("text")}
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        return {"type": "image", "image": _media(url, where, media_dir)}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
            raise InvalidInputError(f"{where}: input_audio needs {{'data': base64, 'format': 'wav'}}")
        return {"type": "audio", "audio": _base64(audio["data"], where)}
    raise InvalidInputError(f"{where}: unsupported content part type {kind!r} (text, image_url, input_audio)")


def _media(url: Any, where: str, media_dir: Path) -> bytes | str:
    if not isinstance(url, str) or not url:
        raise InvalidInputError(f"{where}: image_url needs a 'url' string")
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InvalidInputError(f"{where}: a data URI must be data:<type>;base64,<data>")
        return _base64(data, where)
    if url.lower().startswith(("http://", "https://")):
        raise InvalidInputError(f"{where}: http(s) media URLs are not fetched; use a data URI or a path")
    root = media_dir.resolve()
    path = (root / url.removeprefix("file://")).resolve()
    if not path.is_relative_to(root):
        raise InvalidInputError(f"{where}: {url!r} is outside the media directory {root} (--media-dir)")
    if not path.is_file():
        raise InvalidInputError(f"{where}: no media file {path} (paths are relative to --media-dir {root})")
    return str(path)


def _base64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{where}: the base64 data does not decode ({exc})") from exc
