"""Chat content parts as users write them, turned into mmcore's canonical parts.

Accepted forms (each becomes ``{"type": kind, kind: value, ...}``):

- text: ``{"type": "text", "text": ...}`` (also OpenAI's ``"input_text"``);
- OpenAI images: ``{"type": "image_url", "image_url": {"url": ...}}`` (or a bare URL string);
- OpenAI audio: ``{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav"}}``;
- Hugging Face media: ``{"type": "image" | "audio", "url" | "path" | "image" | "audio" | "base64": ...}``;
- values: ``data:`` URIs with base64, ``file://`` URLs and local paths, raw bytes, or decoded objects
  (PIL images, arrays) that the modality plugin takes as they are.

Remote ``http(s)`` URLs are refused (mmcore fetches nothing). A `MediaPolicy` says whether local
paths are allowed and under which folder (a server restricts them to its media directory).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mmcore.errors import InvalidInputError, MediaNotFoundError

__all__ = [
    "MEDIA_KINDS",
    "MediaPolicy",
    "decode_data_uri",
    "normalize_messages",
    "normalize_part",
    "plugin_for_kind",
]

#: The media kinds mmcore's own plugins handle, and the distribution that provides each.
MEDIA_KINDS: Mapping[str, str] = {"image": "mmcore-image", "audio": "mmcore-audio"}
#: Part types that are another spelling of a canonical kind.
_ALIASES: Mapping[str, str] = {
    "input_text": "text",
    "image_url": "image",
    "input_image": "image",
    "input_audio": "audio",
    "audio_url": "audio",
}
#: Keys a Hugging Face media part may carry its value under, in order of preference.
_VALUE_KEYS = ("{kind}", "url", "path", "base64", "{kind}_url", "input_{kind}", "data")


def plugin_for_kind(kind: str) -> str | None:
    """The distribution that handles content of `kind` (``"image_url"`` -> ``"mmcore-image"``), if known."""
    return MEDIA_KINDS.get(_ALIASES.get(kind, kind))


@dataclass(frozen=True)
class MediaPolicy:
    """Where media may come from.

    Fields:
        local_files: whether local paths and ``file://`` URLs are accepted.
        media_dir: when set, local paths must lie inside this folder (relative ones are taken
            relative to it).
    """

    local_files: bool = True
    media_dir: Path | None = None


DEFAULT_POLICY = MediaPolicy()


def normalize_messages(messages: Sequence[Mapping[str, Any]], policy: MediaPolicy = DEFAULT_POLICY) -> list[Any]:
    """The conversation with every list content's parts in canonical form (other fields kept)."""
    out: list[Any] = []
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, Sequence) and not isinstance(content, str | bytes):
            parts = [
                normalize_part(part, where=f"message {index} part {number}", policy=policy)
                for number, part in enumerate(content)
            ]
            out.append({**message, "content": parts})
        else:
            out.append(message)  # strings and malformed messages are judged by the renderer
    return out


def normalize_part(
    part: Mapping[str, Any], *, where: str = "content part", policy: MediaPolicy = DEFAULT_POLICY
) -> Mapping[str, Any]:
    """One part in canonical form; parts of types mmcore does not know pass through unchanged."""
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        raise InvalidInputError(f"{where}: a content part must be a mapping with a 'type', got {part!r:.80}")
    given = part["type"]
    kind = _ALIASES.get(given, given)
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidInputError(f"{where}: a text part needs a 'text' string, got {text!r:.60}")
        return part if given == "text" else {"type": "text", "text": text}
    if kind not in MEDIA_KINDS:
        return part
    value, key = _media_value(part, given, kind, where)
    extras = {k: v for k, v in part.items() if k not in ("type", key)}
    if isinstance(value, Mapping):  # OpenAI's nested objects
        extras.pop(key, None)
        value = _from_nested(value, given, kind, where)
    if key == "base64" and isinstance(value, str):
        value = _b64decode(value, where)
    elif isinstance(value, str | os.PathLike):
        value = _from_location(os.fspath(value), kind, where, policy)
    elif isinstance(value, bytearray | memoryview):
        value = bytes(value)
    return {**extras, "type": kind, kind: value}


def _media_value(part: Mapping[str, Any], given: str, kind: str, where: str) -> tuple[Any, str]:
    for template in (given, *_VALUE_KEYS):
        key = template.format(kind=kind)
        if key in part and part[key] is not None:
            return part[key], key
    raise InvalidInputError(
        f"{where}: a {given!r} part needs its {kind} under one of "
        f"{sorted({given, *(t.format(kind=kind) for t in _VALUE_KEYS)})}"
    )


def _from_nested(value: Mapping[str, Any], given: str, kind: str, where: str) -> Any:
    """OpenAI's ``image_url: {"url": ...}`` and ``input_audio: {"data": ..., "format": ...}``."""
    if "url" in value:
        return value["url"]
    if "data" in value:
        data = value["data"]
        if not isinstance(data, str):
            raise InvalidInputError(f"{where}: {given}.data must be a base64 string, got {type(data).__name__}")
        if data.startswith("data:"):
            return data
        return _b64decode(data, where)
    raise InvalidInputError(f"{where}: {given} must hold 'url' (or 'data' with base64), got keys {sorted(value)}")


def _from_location(location: str, kind: str, where: str, policy: MediaPolicy) -> Any:
    """Bytes of a data URI, or the path of a local file (checked against the policy)."""
    lowered = location[:8].lower()
    if lowered.startswith("data:"):
        return decode_data_uri(location, kind=kind, where=where)
    if lowered.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{where}: remote URL {location[:80]!r} refused: mmcore does not fetch media from the network; "
            "send the file inline as a data: URI (base64) or as a local path"
        )
    if lowered.startswith("file://"):
        location = unquote(urlparse(location).path)
    elif "://" in location[:16]:
        raise InvalidInputError(
            f"{where}: unsupported URL scheme in {location[:60]!r}; use a data: URI, a file:// URL or a local path"
        )
    return _local_path(location, where, policy)


def _local_path(location: str, where: str, policy: MediaPolicy) -> Path:
    if not policy.local_files:
        raise InvalidInputError(
            f"{where}: local file {location[:80]!r} refused: this service takes media inline (data: URIs); "
            "start it with a media directory to allow files"
        )
    path = Path(location).expanduser()
    if policy.media_dir is not None:
        root = policy.media_dir.resolve()
        path = (root / path).resolve()
        if not path.is_relative_to(root):
            raise InvalidInputError(f"{where}: {location[:80]!r} is outside the media directory; name a file in it")
    if not path.is_file():
        raise MediaNotFoundError(f"{where}: no such media file {location[:120]!r}; check the path")
    return path


def decode_data_uri(uri: str, *, kind: str | None = None, where: str = "data URI") -> bytes:
    """The bytes of a base64 ``data:`` URI; with `kind`, its media type must be ``kind/...``."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise InvalidInputError(f"{where}: malformed data URI (no ','); expected data:<type>/<subtype>;base64,<data>")
    fields = header[len("data:") :].split(";")
    media_type = fields[0].strip().lower()
    if "base64" not in (f.strip().lower() for f in fields[1:]):
        raise InvalidInputError(
            f"{where}: the data URI is not base64-encoded; use data:{media_type or 'type'};base64,…"
        )
    if kind is not None and media_type and not media_type.startswith(f"{kind}/"):
        raise InvalidInputError(
            f"{where}: a data URI of type {media_type!r} cannot be a {kind} part; send {kind}/* data "
            f"(e.g. data:{kind}/{'png' if kind == 'image' else 'wav'};base64,…)"
        )
    return _b64decode(payload, where)


def _b64decode(payload: str, where: str) -> bytes:
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"{where}: corrupt base64 payload ({exc}); encode the file's bytes with standard base64"
        ) from None
    if not data:
        raise InvalidInputError(f"{where}: the base64 payload is empty; send the file's bytes")
    return data
