"""A byte-bounded LRU of encoder outputs, keyed by the encoder and a content hash of its input."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmcore.arrays import as_array, dtype_name
from mmcore.inputs import EmbeddingsInput

__all__ = ["EncoderCache", "EncoderCacheStats", "DEFAULT_ENCODER_CACHE_BYTES"]

#: 64 MiB: a few hundred image embeddings of a phone-sized model.
DEFAULT_ENCODER_CACHE_BYTES = 64 * 1024 * 1024


@dataclass
class EncoderCacheStats:
    """Hits, misses and the encoder time the hits saved."""

    hits: int = 0
    misses: int = 0
    saved_s: float = 0.0


@dataclass(frozen=True)
class _Entry:
    embeddings: EmbeddingsInput
    nbytes: int
    encode_s: float


class EncoderCache:
    """Embeddings of images/audio already encoded, so a repeated item skips its encoder.

    Keys combine the encoder's identity (program file and modality) with a
    BLAKE2b hash of the preprocessed tensor (bytes, shape and dtype). Entries are evicted least-recently-used first
    once `max_bytes` is exceeded. Thread-safe.
    """

    def __init__(self, max_bytes: int = DEFAULT_ENCODER_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.stats = EncoderCacheStats()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @staticmethod
    def key(encoder: str, prepared: Any) -> str:
        """The cache key of an encoder input (a numpy array or torch tensor)."""
        import hashlib  # with the first encoder input (its OpenSSL binding is not needed by text runs)

        data = np.ascontiguousarray(as_array(prepared))
        digest = hashlib.blake2b(digest_size=32)
        digest.update(f"{encoder}|{dtype_name(data.dtype)}|{tuple(data.shape)}|".encode())
        digest.update(data.tobytes())
        return digest.hexdigest()

    def get(self, key: str) -> EmbeddingsInput | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            self.stats.saved_s += entry.encode_s
            return entry.embeddings

    def put(self, key: str, embeddings: EmbeddingsInput, encode_s: float) -> None:
        nbytes = embeddings.embeddings.nbytes
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = _Entry(embeddings, nbytes, encode_s)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
