"""One exception for every answer that is not a success, rendered as OpenAI's error envelope."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from mmcore.errors import (
    ConfigError,
    ConstraintError,
    ContextOverflowError,
    InvalidInputError,
    MediaNotFoundError,
    MMCoreError,
    UnsupportedInputError,
)
from mmcore.serve.protocol import ErrorBody, ErrorEnvelope

__all__ = ["APIError", "api_error_from", "from_validation_error"]

#: ``<_io.BytesIO object at 0x7f...>`` in a library's message: an address means nothing to a client
#: (and differs between two identical requests), so answers name the type only.
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


class APIError(Exception):
    """An HTTP error answer: status, OpenAI error `type`, the offending `param` and a `code`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        message = _OBJECT_REPR.sub(r"<\1>", message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The envelope ``{"error": {"message", "type", "param", "code"}}``."""
        error = ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorEnvelope(error=error).model_dump()

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, code={self.code!r})"


def from_validation_error(exc: ValidationError) -> APIError:
    """A 400 naming the first invalid field of a request body."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return APIError(400, f"invalid request body: {param or 'body'}: {first.get('msg')}", param=param)


def api_error_from(exc: BaseException) -> APIError:
    """The answer for an exception raised while serving (500 for anything unexpected)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationError):
        return from_validation_error(exc)
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, MediaNotFoundError):
        return APIError(404, str(exc), param="messages", code="media_not_found")
    if isinstance(exc, UnsupportedInputError | InvalidInputError):
        return APIError(400, str(exc), param="messages", code="invalid_content")
    if isinstance(exc, ConstraintError):  # found against the model's vocabulary, before decoding
        return APIError(400, str(exc), param="response_format", code="invalid_response_format")
    if isinstance(exc, ConfigError):
        return APIError(400, str(exc), code="invalid_parameter")
    if isinstance(exc, MMCoreError):
        return APIError(500, f"generation failed: {exc}", type="server_error")
    return APIError(500, "internal server error (the server log has the details)", type="server_error")
