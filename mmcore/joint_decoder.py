"""Decoders that take token ids, positions and multimodal embeddings together.

ExecuTorch's Gemma 4 export (`examples/models/gemma4`) has no `token_embedding` method: its
`text_decoder(input_ids [1, T], input_pos [T], inputs_embeds [1, T, D])` embeds the ids itself and,
at rows whose id is a media placeholder, uses the given embeddings instead. Text rows carry zeros
in `inputs_embeds`, media rows carry the placeholder id in `input_ids` (as its `run_gemma4.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore import constants as C
from mmcore.arrays import as_array, is_floating
from mmcore.decoder import _DecoderBase
from mmcore.errors import ExecutionError, InvalidInputError, ProgramError
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.program import Program
from mmcore.stats import Stats

__all__ = ["JointDecoderRunner", "is_joint_decoder", "joint_decoder_bound"]


def is_joint_decoder(program: Program) -> bool:
    """Whether `text_decoder` takes ``(input_ids int64 [1, T], input_pos [T], inputs_embeds [1, T, D])``
    and the program has no `token_embedding`."""
    if C.TOKEN_EMBEDDING in program.method_names or not program.has_method(C.TEXT_DECODER):
        return False
    spec = program.method_spec(C.TEXT_DECODER)
    if spec is None or len(spec.inputs) != 3 or any(i is None for i in spec.inputs):
        return False
    ids, pos, embeds = spec.input(0), spec.input(1), spec.input(2)
    return (
        ids.rank == 2
        and ids.dtype == np.int64
        and pos.rank == 1
        and pos.dtype == np.int64
        and embeds.rank == 3
        and is_floating(embeds.dtype)
    )


def joint_decoder_bound(program: Program) -> int | None:
    """The context such a program was exported for: its sequence dimension's upper bound + 1
    (the export bounds T by ``max_seq_len - 1`` and sizes the KV cache ``max_seq_len``), or None
    when the program is not one."""
    if not is_joint_decoder(program):
        return None
    spec = program.method_spec(C.TEXT_DECODER)
    assert spec is not None
    return int(spec.input(0).shape[1]) + 1


class JointDecoderRunner(_DecoderBase):
    """Runs `text_decoder(input_ids, input_pos, inputs_embeds)`; a prompt goes in as one call per
    chunk of rows, token rows and media rows together (as ExecuTorch's Gemma 4 runner does)."""

    def __init__(self, program: Program, stats: Stats | None = None, media_token_id: int | None = None) -> None:
        if not is_joint_decoder(program):
            raise ProgramError(
                f"method '{C.TEXT_DECODER}' of {program.path} does not take (input_ids [1, T], input_pos [T], "
                "inputs_embeds [1, T, D]); use MultimodalDecoderRunner for token_embedding programs"
            )
        super().__init__(program.method(C.TEXT_DECODER), stats)
        embeds = self.decoder.spec.input(2)
        self.embedding_dim = int(embeds.shape[2])
        self.embedding_dtype = embeds.dtype
        #: The id written at rows given as embeddings (the model's image or audio placeholder).
        self.media_token_id = media_token_id
        self._token = np.zeros((1, 1), dtype=np.int64)  # [1, 1]
        self._zero_row = np.zeros((1, 1, self.embedding_dim), dtype=self.embedding_dtype)  # [1, 1, D]

    # -- the shared decoder interface ----------------------------------------------------------
    def step(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after feeding token ids `[1, T]` (zero embeddings) at `start_pos..`."""
        length = int(tokens.shape[1])
        zeros = np.zeros((1, length, self.embedding_dim), dtype=self.embedding_dtype)
        return self._run(np.ascontiguousarray(tokens, dtype=np.int64), zeros, start_pos)

    def step_token(self, token: int, pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after feeding one token at `pos`."""
        self._token[0, 0] = token
        return self._run(self._token, self._zero_row, pos)

    def decode(self, embeddings: Any, start_pos: int) -> npt.NDArray[Any]:
        """Logits `[V]` after writing media `embeddings` `[1, T, D]` at `start_pos..` (their rows
        carry the media placeholder id)."""
        embeds = self._as_embeddings(embeddings)
        ids = np.full((1, embeds.shape[1]), self._media_id(), dtype=np.int64)
        return self._run(ids, embeds, start_pos)

    def _all_rows(self, tokens: npt.NDArray[np.int64], start_pos: int) -> npt.NDArray[Any]:
        raise ExecutionError(
            f"method '{C.TEXT_DECODER}' returns the last row's logits only, so it cannot verify drafts; "
            "turn speculative decoding off for this program"
        )

    # -- joint prefill -------------------------------------------------------------------------
    def write(self, segments: Sequence[TokensInput | EmbeddingsInput], start_pos: int, chunk: int) -> npt.NDArray[Any]:
        """Logits `[V]` (a copy) after writing all `segments` at `start_pos..`, at most `chunk` rows
        per call: token rows with zero embeddings, media rows with the placeholder id."""
        ids_parts: list[npt.NDArray[np.int64]] = []
        embed_parts: list[npt.NDArray[Any]] = []
        for segment in segments:
            if isinstance(segment, TokensInput):
                ids_parts.append(np.asarray(segment.ids, dtype=np.int64))
                embed_parts.append(np.zeros((len(segment.ids), self.embedding_dim), dtype=self.embedding_dtype))
            else:
                embeds = self._as_embeddings(segment.embeddings)[0]
                ids_parts.append(np.full(embeds.shape[0], self._media_id(), dtype=np.int64))
                embed_parts.append(embeds)
        ids = np.concatenate(ids_parts)[None]  # [1, N]
        embeds_all = np.concatenate(embed_parts)[None]  # [1, N, D]
        logits: npt.NDArray[Any] = np.empty(0, dtype=np.float32)
        for begin in range(0, ids.shape[1], chunk):
            end = begin + chunk
            logits = self._run(
                np.ascontiguousarray(ids[:, begin:end]),
                np.ascontiguousarray(embeds_all[:, begin:end]),
                start_pos + begin,
            )
        return logits.copy()

    # -- helpers -------------------------------------------------------------------------------
    def _media_id(self) -> int:
        if self.media_token_id is None:
            raise InvalidInputError(
                f"method '{C.TEXT_DECODER}' takes media embeddings at placeholder-id rows, but no placeholder id is "
                "known; open the program with its adapter (mmcore.open_model) or set runner.media_token_id"
            )
        return self.media_token_id

    def _as_embeddings(self, embeddings: Any) -> npt.NDArray[Any]:
        embeds = as_array(embeddings)
        if embeds.dtype != self.embedding_dtype:
            embeds = embeds.astype(self.embedding_dtype)
        return embeds

    def _run(self, ids: npt.NDArray[np.int64], embeds: npt.NDArray[Any], start_pos: int) -> npt.NDArray[Any]:
        length = int(ids.shape[1])
        outputs = self._timed(self.decoder, [ids, self.positions(start_pos, length), embeds])
        if not outputs or not isinstance(outputs[0], np.ndarray):
            raise ExecutionError(f"method '{self.decoder.name}' returned no logits tensor")
        logits: npt.NDArray[Any] = outputs[0]  # [1, T', V]
        row: npt.NDArray[Any] = logits[0] if logits.ndim == 2 else logits[0, -1]
        return row
