"""The response body of one batch request, rendered by the server's `ChatService`: a batch line's
body is the `chat.completion` (or `text_completion`, or error envelope) that `mmcore serve` would
send for the same request body, plus mmcore's token ids under ``"mmcore"``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.chat_model import ChatModel
from mmcore.content import MediaPolicy
from mmcore.errors import MMCoreError
from mmcore.serve.chat import ChatService
from mmcore.serve.errors import APIError, api_error_from

__all__ = ["Reply", "open_service", "respond"]

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    """What the endpoint answered: the HTTP status and the JSON body."""

    status_code: int
    body: dict[str, Any]


def open_service(model: ChatModel, *, model_id: str | None, media_dir: str | Path) -> ChatService:
    """One slot of the server's service around `model`; local media paths resolve inside `media_dir`
    (as `mmcore serve --media-dir` does). The slot keeps its KV cache between requests, so requests
    of one conversation prefix answered in a row reuse it."""
    media = MediaPolicy(local_files=True, media_dir=Path(media_dir).resolve())
    return ChatService(model, model_id=model_id, parallel=1, max_queue=1, media=media)


def respond(service: ChatService, url: str, body: Mapping[str, Any]) -> Reply:
    """The server's answer to `body` posted to `url` (an error status carries OpenAI's envelope,
    exactly as the server's error handler renders it)."""
    try:
        if url == "/v1/completions":
            return Reply(200, service.completion(body, token_ids=True))
        return Reply(200, service.chat_completion(body, token_ids=True))
    except APIError as exc:
        return Reply(exc.status, exc.body())
    except MMCoreError as exc:  # bad media and the like, found while the body is read
        error = api_error_from(exc)
        return Reply(error.status, error.body())
    except Exception as exc:  # what the server's handler does with an unexpected error
        logger.exception("unexpected error answering %s", url)
        error = api_error_from(exc)
        return Reply(error.status, error.body())
