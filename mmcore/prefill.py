"""Prefill: writing a prompt (tokens, or embeddings from modality plugins) into the KV cache."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore.arrays import is_floating, is_tensor
from mmcore.decoder import MultimodalDecoderRunner, TextDecoderRunner
from mmcore.encoder_cache import EncoderCache
from mmcore.errors import InvalidInputError, MMCoreError
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.joint_decoder import JointDecoderRunner
from mmcore.program import Program
from mmcore.registry import ModalityHandler, ModalityRegistry, PrefillContext, PrefillOutput
from mmcore.tokenizer import Tokenizer

__all__ = ["TextPrefiller", "MultimodalPrefiller", "Segment"]

Segment = PrefillOutput


class TextPrefiller:
    """Feeds token ids to a `TextDecoderRunner`: one call per chunk of at most `max_seq_len` tokens
    when the decoder takes several tokens per call, token by token otherwise."""

    def __init__(self, decoder: TextDecoderRunner, max_seq_len: int) -> None:
        self.decoder = decoder
        self.chunk_size = max(1, min(max_seq_len, decoder.max_tokens_per_call))

    def prefill(self, tokens: Sequence[int], start_pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after the last token (a copy, safe to keep)."""
        if not tokens:
            raise InvalidInputError("prefill got no tokens: the prompt encoded to an empty sequence")
        return self.decoder.prefill_ids(tokens, start_pos, self.chunk_size)


class MultimodalPrefiller:
    """Turns ordered inputs into segments through their modality handlers, then writes them.

    Each input's handler is a dict lookup by type; handlers turn inputs into token ids or
    embeddings `[1, T, D]`. The shared tail lives here once: token ids -> `token_embedding`,
    embeddings -> `text_decoder` at the current positions, in chunks the decoder accepts.
    """

    def __init__(
        self,
        program: Program,
        decoder: MultimodalDecoderRunner | JointDecoderRunner,
        registry: ModalityRegistry,
        tokenizer: Tokenizer | None,
        *,
        max_seq_len: int,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        encoder_cache: EncoderCache | None = None,
    ) -> None:
        self.program = program
        self.encoder_cache = encoder_cache
        self.cache_hits = 0  # encoder-cache hits of the last `prepare`
        self.cache_saved_s = 0.0
        # Running totals (never reset): a turn that calls `prepare` several times (an adapter's
        # renderer encodes each media item on its own) counts its hits as a difference of these.
        self.total_cache_hits = 0
        self.total_cache_saved_s = 0.0
        self.decoder = decoder
        self.registry = registry
        self.tokenizer = tokenizer
        self.settings = dict(settings or {})
        self.chunk_size = max(1, min(max_seq_len, decoder.max_tokens_per_call))

    def prepare(
        self, inputs: Sequence[Any], *, start_pos: int, num_bos: int = 0, num_eos: int = 0, bos_id: int | None
    ) -> list[Segment]:
        """Preprocess every input and run its encoder; nothing is written to the KV cache yet.

        BOS/EOS go with the first input of a conversation (`start_pos == 0`): a text handler adds
        them; before a non-text first input, `num_bos` BOS ids form their own segment.
        """
        segments: list[Segment] = []
        self.cache_hits, self.cache_saved_s = 0, 0.0
        for index, item in enumerate(inputs):
            first = index == 0 and start_pos == 0
            bos, eos = (num_bos, num_eos) if first else (0, 0)
            if isinstance(item, (TokensInput, EmbeddingsInput)):
                segment: Segment = item
            else:
                handler = self.registry.handler_for(item)
                if first and bos and handler.name != "text":
                    if bos_id is None:
                        raise InvalidInputError(
                            f"num_bos={bos} was asked for but neither the tokenizer nor the program "
                            "declares a BOS id; pass num_bos=0"
                        )
                    segments.append(TokensInput([bos_id] * bos))
                    bos, eos = 0, 0
                ctx = PrefillContext(
                    program=self.program,
                    tokenizer=self.tokenizer,
                    settings=self.settings.get(handler.name, {}),
                    num_bos=bos,
                    num_eos=eos,
                    index=index,
                )
                try:
                    segment = self._encode(handler, handler.preprocess(item, ctx), ctx)
                except MMCoreError:
                    raise
                except Exception as exc:
                    raise InvalidInputError(
                        f"input {index} ({type(item).__name__}): the '{handler.name}' plugin failed: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            segments.append(self._checked(segment, index, item))
        return segments

    def _encode(self, handler: ModalityHandler, prepared: Any, ctx: PrefillContext) -> Any:
        """`handler.prefill`, through the encoder cache when the prepared input is a tensor."""
        cache = self.encoder_cache
        if cache is None or not (isinstance(prepared, np.ndarray) or is_tensor(prepared)):
            return handler.prefill(prepared, ctx)
        key = cache.key(f"{self.program.path}|{handler.name}", prepared)
        saved_before = cache.stats.saved_s
        hit = cache.get(key)
        if hit is not None:
            self.cache_hits += 1
            self.cache_saved_s += cache.stats.saved_s - saved_before
            self.total_cache_hits += 1
            self.total_cache_saved_s += cache.stats.saved_s - saved_before
            return hit
        began = time.perf_counter()
        segment = handler.prefill(prepared, ctx)
        if isinstance(segment, EmbeddingsInput):
            cache.put(key, segment, time.perf_counter() - began)
        return segment

    def prefill(self, segments: Sequence[Segment], start_pos: int) -> npt.NDArray[Any]:
        """Write segments at increasing positions; logits `[V]` after the last row (a copy).

        Adjacent token segments (a cached answer's tail and the next message, say) are written
        together, in as few decoder calls as the chunk size allows: each call has a fixed cost."""
        if isinstance(self.decoder, JointDecoderRunner):  # ids and embeddings in the same calls
            return self.decoder.write(segments, start_pos, self.chunk_size)
        logits: npt.NDArray[Any] = np.empty(0, dtype=np.float32)
        pos = start_pos
        step = self.chunk_size
        for segment in _merge_tokens(segments):
            if isinstance(segment, TokensInput):
                logits = self.decoder.prefill_ids(segment.ids, pos, step)  # a copy
                pos += len(segment.ids)
            else:
                embeds = segment.embeddings  # [1, T, D]
                for begin in range(0, embeds.shape[1], step):
                    chunk = np.ascontiguousarray(embeds[:, begin : begin + step])
                    logits = self.decoder.decode(chunk, pos)
                    pos += chunk.shape[1]
                logits = logits.copy()  # the decoder's output memory is reused by its next call
        return logits

    def _checked(self, segment: Any, index: int, item: Any) -> Segment:
        what = f"input {index} ({type(item).__name__})"
        if isinstance(segment, TokensInput):
            if not segment.ids:
                raise InvalidInputError(f"{what} produced no tokens (an empty text?); remove it or give it content")
            width = self.decoder.vocab_width
            if min(segment.ids) < 0 or max(segment.ids) >= width:
                bad = [i for i in segment.ids if not 0 <= i < width]
                raise InvalidInputError(f"{what} has token ids outside the model's vocabulary [0, {width}): {bad[:8]}")
            return segment
        if isinstance(segment, EmbeddingsInput):
            embeds = segment.embeddings
            dim = self.decoder.embedding_dim
            if embeds.ndim != 3 or embeds.shape[0] != 1:
                raise InvalidInputError(f"{what} gave embeddings of shape {list(embeds.shape)}; expected [1, T, {dim}]")
            if embeds.shape[2] != dim:
                raise InvalidInputError(
                    f"{what} gave embeddings of width {embeds.shape[2]}; the text decoder takes {dim}"
                )
            if embeds.shape[1] == 0:
                raise InvalidInputError(f"{what}: the encoder returned an empty output (0 rows)")
            if not is_floating(embeds.dtype):
                raise InvalidInputError(f"{what} gave {embeds.dtype} embeddings; expected floating point")
            return segment
        raise InvalidInputError(
            f"{what}: its plugin's prefill returned {type(segment).__name__}; expected TokensInput or EmbeddingsInput"
        )


def _merge_tokens(segments: Sequence[Segment]) -> list[Segment]:
    """`segments` with each run of adjacent `TokensInput`s joined into one."""
    out: list[Segment] = []
    for segment in segments:
        if isinstance(segment, TokensInput) and out and isinstance(out[-1], TokensInput):
            out[-1] = TokensInput([*out[-1].ids, *segment.ids])
        else:
            out.append(segment)
    return out
