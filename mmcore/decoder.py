"""Decoder runners: one decoder call at given positions, returning last-position logits.

Arrays here are numpy: token ids and positions int64, logits as the program returns them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore import constants as C
from mmcore.arrays import SCALAR_TYPES, as_array
from mmcore.errors import ExecutionError, ProgramError
from mmcore.program import LoadedMethod, NativeMethod, Program
from mmcore.stats import Stats, now_ms

__all__ = [
    "EMBEDDING_CACHE_BYTES",
    "MultimodalDecoderRunner",
    "NativeGreedyLoop",
    "NativeTokenPrefill",
    "NativeVerifier",
    "TextDecoderRunner",
]

#: Memory for decoded tokens' embedding rows (see `MultimodalDecoderRunner.step_token`).
EMBEDDING_CACHE_BYTES = 16 * 1024 * 1024


class _DecoderBase:
    """Position inputs, logits extraction and execution timing shared by both decoder runners."""

    def __init__(self, decoder: LoadedMethod, stats: Stats | None) -> None:
        self.decoder = decoder
        self.stats = stats if stats is not None else Stats()
        spec = decoder.spec
        self.use_kv_cache = len(spec.inputs) > 1
        # Position input: `[start]` (the model adds arange(T)) or a full cache-position range `[T]`.
        self.uses_cache_positions = self.use_kv_cache and spec.input(1).shape[0] > 1
        self.max_tokens_per_call = spec.input(0).shape[1]
        output = spec.outputs[0] if spec.outputs else None
        if output is None or output.rank not in (2, 3):
            raise ProgramError(
                f"method '{decoder.name}' must return logits [1, V] or [1, T, V], "
                f"got {output.describe() if output else 'no tensor output'}"
            )
        self.vocab_width = output.shape[-1]
        # A reused one-element position array (cheaper per token than a new one).
        self._position = np.zeros(1, dtype=np.int64)  # [1]
        # Set by `_use_native_tokens` when token ids can go through the decoder natively.
        self._native_prefill: NativeTokenPrefill | None = None
        self._native_embedding: NativeMethod | None = None

    def positions(self, start_pos: int, length: int) -> npt.NDArray[np.int64]:
        """The decoder's position input for `length` rows starting at `start_pos`."""
        if self.uses_cache_positions and length > 1:
            return np.arange(start_pos, start_pos + length, dtype=np.int64)  # [T]
        self._position[0] = start_pos  # [start] or, for one row, the cache position itself
        return self._position

    def _run_decoder(
        self, first: npt.NDArray[Any], start_pos: int, length: int, *, all_rows: bool = False
    ) -> npt.NDArray[Any]:
        inputs = [first, self.positions(start_pos, length)] if self.use_kv_cache else [first]
        outputs = self._timed(self.decoder, inputs)
        if len(outputs) != 1 or not isinstance(outputs[0], np.ndarray):
            raise ExecutionError(
                f"method '{self.decoder.name}' must return exactly one logits tensor, got {len(outputs)} outputs"
            )
        logits: npt.NDArray[Any] = outputs[0]  # [1, V] or [1, T, V]
        row: npt.NDArray[Any] = logits[0] if all_rows or logits.ndim == 2 else logits[0, -1]  # [T, V] or [V]
        return row

    def prefill_ids(self, ids: Sequence[int], start_pos: int, chunk: int) -> npt.NDArray[Any]:
        """Logits `[V]` (a copy) after writing `ids` at `start_pos..`, at most `chunk` per call."""
        native = self._native_prefill
        if native is not None:
            return native(ids, start_pos, chunk)
        tokens = np.array(ids, dtype=np.int64)[None]  # [1, N]
        logits: npt.NDArray[Any] = np.empty(0, dtype=np.float32)
        for begin in range(0, tokens.shape[1], chunk):
            logits = self.step(tokens[:, begin : begin + chunk], start_pos + begin)
        return logits.copy()

    def step(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        raise NotImplementedError

    def step_rows(self, ids: Sequence[int], start_pos: int) -> np.ndarray:
        """Logits `[T, V]` (a copy) of every row after feeding `ids` at `start_pos..` in one call."""
        tokens = np.array(ids, dtype=np.int64)[None]  # [1, T]
        return self._all_rows(tokens, start_pos).astype(np.float32)  # astype copies

    def _all_rows(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        raise NotImplementedError

    def native_verifier(self) -> NativeVerifier | None:
        """Greedy verification below Python, when token ids go through this decoder natively and its
        logits are float32."""
        output = self.decoder.spec.outputs[0]
        if self._native_prefill is None or output is None or output.dtype != np.float32:
            return None
        assert isinstance(self.decoder, NativeMethod)
        return NativeVerifier(self._native_embedding, self.decoder, self.uses_cache_positions, self.stats)

    def _use_native_tokens(self, token_input: LoadedMethod, embedding: NativeMethod | None) -> None:
        """Prefill (and greedily decode) token ids natively when `token_input` (the decoder itself,
        or `token_embedding`) and the decoder are native methods of one module with int64 ids and
        positions."""
        decoder, spec = self.decoder, self.decoder.spec
        if not (
            isinstance(decoder, NativeMethod)
            and isinstance(token_input, NativeMethod)
            and token_input.module is decoder.module
            and len(spec.inputs) == 2
            and spec.input(1).dtype == np.int64
            and token_input.spec.input(0).dtype == np.int64
        ):
            return
        self._native_embedding = embedding
        self._native_prefill = NativeTokenPrefill(embedding, decoder, self.uses_cache_positions, self.stats)

    def greedy_loop(self) -> NativeGreedyLoop | None:
        """A native greedy decode loop over this decoder, when token ids go through it natively and
        its logits are float32 (what the native argmax reads)."""
        output = self.decoder.spec.outputs[0]
        if self._native_prefill is None or output is None or output.dtype != np.float32:
            return None
        assert isinstance(self.decoder, NativeMethod)
        return NativeGreedyLoop(self._native_embedding, self.decoder, self.stats)

    def known_argmax(self, logits: npt.NDArray[Any]) -> int | None:
        """The first maximum of `logits` if the native prefill returned them and computed it, else None."""
        native = self._native_prefill
        if native is not None and native.last_logits is logits:
            return native.last_argmax
        return None

    def _timed(self, method: LoadedMethod, inputs: list[npt.NDArray[Any]]) -> list[Any]:
        start_ms, began = now_ms(), time.perf_counter()
        outputs = method.execute(inputs, clone_outputs=False)
        self.stats.record_execution(start_ms, time.perf_counter() - began)
        return outputs


class _NativeTokenPath:
    """Token ids through `embedding` (if any) into `decoder`, in the native module both belong to."""

    def __init__(self, embedding: NativeMethod | None, decoder: NativeMethod, stats: Stats) -> None:
        self._module = decoder.module
        self._module_errors = decoder.runtime_error
        self._embedding = embedding.name if embedding is not None else None
        self._decoder = decoder.name
        self.stats = stats


class NativeGreedyLoop(_NativeTokenPath):
    """Greedy decoding below Python: each step embeds (if needed) and decodes the last token, takes
    the first maximum of the logits and feeds it back, calling `on_token` in between.

    Gives the same tokens as stepping the decoder from Python with a greedy `Sampler`.
    """

    def __call__(
        self,
        token: int,
        pos: int,
        max_steps: int,
        eos_ids: Collection[int],
        on_token: Callable[[int], bool] | None,
        mask: np.ndarray | None = None,
    ) -> list[int]:
        """Tokens generated after feeding `token` at `pos`: at most `max_steps`, ending after an id in
        `eos_ids` or when `on_token(id)` returns True. With `mask` (int32 `[ceil(V / 32)]`, bit i =
        id i allowed; `on_token` may rewrite it in place), each argmax is over the allowed ids only."""
        start_ms = now_ms()
        try:
            tokens, seconds = self._module.greedy_decode(
                self._embedding, self._decoder, token, pos, max_steps, eos_ids, on_token, mask
            )
        except self._module_errors as exc:
            raise ExecutionError(f"greedy decoding from position {pos} failed: {exc}") from exc
        self.stats.record_execution(start_ms, seconds)
        return list(tokens)


class NativeVerifier(_NativeTokenPath):
    """One decoder call on the current token and its drafts, each row's first argmax and the number
    of drafts the target agrees with, all computed below Python."""

    def __init__(
        self, embedding: NativeMethod | None, decoder: NativeMethod, uses_cache_positions: bool, stats: Stats
    ) -> None:
        super().__init__(embedding, decoder, stats)
        self._cache_positions = uses_cache_positions

    def __call__(self, ids: Sequence[int], start_pos: int) -> tuple[list[int], int, float]:
        """(argmax of every row, accepted drafts, seconds) after feeding `ids` at `start_pos..`."""
        start_ms = now_ms()
        try:
            rows, accepted, seconds = self._module.verify_greedy(
                self._embedding, self._decoder, ids, start_pos, self._cache_positions
            )
        except (self._module_errors, ValueError) as exc:
            raise ExecutionError(f"verifying {len(ids) - 1} draft(s) at position {start_pos} failed: {exc}") from exc
        self.stats.record_execution(start_ms, seconds)
        return rows, accepted, seconds


class NativeTokenPrefill(_NativeTokenPath):
    """Writes token ids into the KV cache below Python: per chunk, (embedding and) decoder calls with
    no Python in between; returns the last token's logits row."""

    def __init__(
        self, embedding: NativeMethod | None, decoder: NativeMethod, uses_cache_positions: bool, stats: Stats
    ) -> None:
        super().__init__(embedding, decoder, stats)
        self._cache_positions = uses_cache_positions
        # The logits last returned and their first maximum (computed natively; None unless float32).
        self.last_logits: npt.NDArray[Any] | None = None
        self.last_argmax: int | None = None

    def __call__(self, ids: Sequence[int], start_pos: int, chunk: int) -> npt.NDArray[Any]:
        """Logits `[V]` (a copy) after writing `ids` at `start_pos..`, at most `chunk` per call."""
        start_ms = now_ms()
        try:
            row, code, seconds, argmax = self._module.prefill_tokens(
                self._embedding, self._decoder, ids, start_pos, chunk, self._cache_positions
            )
        except self._module_errors as exc:
            raise ExecutionError(f"writing {len(ids)} token(s) at position {start_pos} failed: {exc}") from exc
        self.stats.record_execution(start_ms, seconds)
        logits = np.frombuffer(row, dtype=SCALAR_TYPES[code])  # [V]
        self.last_logits, self.last_argmax = logits, (argmax if argmax >= 0 else None)
        return logits


class TextDecoderRunner(_DecoderBase):
    """Runs a text-only program's `forward(tokens [1, T], positions)` (or `forward(tokens)` without
    a KV cache)."""

    def __init__(self, program: Program, method_name: str = C.FORWARD, stats: Stats | None = None) -> None:
        super().__init__(program.method(method_name), stats)
        self._token = np.zeros((1, 1), dtype=np.int64)  # [1, 1]
        self._use_native_tokens(self.decoder, None)

    def step(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after feeding `tokens` `[1, T]` at positions `start_pos..start_pos+T-1`.

        The returned array is valid until the next call (it aliases the method's output memory).
        """
        return self._run_decoder(tokens, start_pos, int(tokens.shape[1]))

    def step_token(self, token: int, pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after feeding one token at `pos` (KV-cache programs)."""
        self._token[0, 0] = token
        return self._run_decoder(self._token, pos, 1)

    def _all_rows(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        return self._run_decoder(tokens, start_pos, int(tokens.shape[1]), all_rows=True)


class MultimodalDecoderRunner(_DecoderBase):
    """Runs `token_embedding` then `text_decoder(embeds [1, T, D], positions)`."""

    def __init__(self, program: Program, stats: Stats | None = None) -> None:
        program.require(C.TOKEN_EMBEDDING, C.TEXT_DECODER)
        super().__init__(program.method(C.TEXT_DECODER), stats)
        if not self.use_kv_cache:
            raise ProgramError(
                f"method '{C.TEXT_DECODER}' of {program.path} takes no position input; multimodal "
                "programs need a KV-cache decoder (embeddings, positions)"
            )
        self.embedding = program.method(C.TOKEN_EMBEDDING)
        embeds = self.decoder.spec.input(0)
        if embeds.rank != 3:
            raise ProgramError(
                f"method '{C.TEXT_DECODER}' input 0 must be embeddings [1, T, D], got {embeds.describe()}"
            )
        self.embedding_dim = embeds.shape[2]
        self.embedding_dtype = embeds.dtype
        self.max_tokens_per_call = min(self.max_tokens_per_call, self.embedding.spec.input(0).shape[1])
        self._token = np.zeros((1, 1), dtype=np.int64)  # [1, 1]
        # Embedding rows of tokens already decoded: an embedding lookup depends on the id alone, so a
        # repeated token skips the `token_embedding` call. Bounded by EMBEDDING_CACHE_BYTES.
        self._rows: dict[int, npt.NDArray[Any]] = {}
        row_bytes = self.embedding_dim * max(self.embedding_dtype.itemsize, 1)
        self._max_rows = EMBEDDING_CACHE_BYTES // row_bytes
        embedded = self.embedding.spec.outputs[0] if self.embedding.spec.outputs else None
        if isinstance(self.embedding, NativeMethod) and embedded and embedded.dtype == self.embedding_dtype:
            self._use_native_tokens(self.embedding, self.embedding)  # embeddings need no conversion

    def embed(self, tokens: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """Embeddings `[1, T, D]` of token ids `[1, T]` (valid until the next call)."""
        embedded: npt.NDArray[Any] = self._timed(self.embedding, [tokens])[0]
        return embedded

    def decode(self, embeddings: Any, start_pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after writing `embeddings` `[1, T, D]` (numpy; torch is converted) at
        `start_pos..start_pos+T-1`."""
        embeddings = as_array(embeddings)
        if embeddings.dtype != self.embedding_dtype:
            embeddings = embeddings.astype(self.embedding_dtype)
        return self._run_decoder(embeddings, start_pos, int(embeddings.shape[1]))

    def step(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after embedding and feeding `tokens` `[1, T]` at `start_pos`."""
        return self.decode(self.embed(tokens), start_pos)

    def _all_rows(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        embeddings = self.embed(tokens)  # [1, T, D]
        if embeddings.dtype != self.embedding_dtype:
            embeddings = embeddings.astype(self.embedding_dtype)
        return self._run_decoder(embeddings, start_pos, int(embeddings.shape[1]), all_rows=True)

    def step_token(self, token: int, pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after feeding one token at `pos`."""
        row = self._rows.get(token)
        if row is None:
            self._token[0, 0] = token
            row = self.embed(self._token)  # [1, 1, D]
            if len(self._rows) < self._max_rows:
                row = row.copy()
                self._rows[token] = row
        return self.decode(row, pos)
