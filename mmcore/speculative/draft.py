"""Draft-model drafting: a second, smaller program with the same tokenizer proposes k tokens."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mmcore import constants as C
from mmcore.arrays import to_float32
from mmcore.decoder import MultimodalDecoderRunner, TextDecoderRunner
from mmcore.errors import ConfigError
from mmcore.metadata import LLMMetadata
from mmcore.program import Program
from mmcore.speculative.ngram import NO_TOKEN
from mmcore.speculative.verify import SamplingParams, probabilities
from mmcore.stats import Stats

__all__ = ["DraftModel", "DraftModelDrafter"]


class DraftModel:
    """A loaded draft program: its decoder, context and own stats (kept apart from the target's)."""

    def __init__(self, path: str | os.PathLike[str], target_vocab: int) -> None:
        self.path = path
        self.program = Program(path)
        self.stats = Stats()
        self.decoder: TextDecoderRunner | MultimodalDecoderRunner
        if self.program.has_method(C.TEXT_DECODER):
            self.decoder = MultimodalDecoderRunner(self.program, self.stats)
        else:
            self.decoder = TextDecoderRunner(self.program, stats=self.stats)
        if not self.decoder.use_kv_cache:
            raise ConfigError(f"draft model {path} has no KV cache; a draft program needs one")
        if self.decoder.vocab_width > target_vocab:
            raise ConfigError(
                f"draft model {path} has logits over {self.decoder.vocab_width} ids but the target only "
                f"{target_vocab}; the draft must use the target's tokenizer"
            )
        metadata = LLMMetadata.from_program(self.program, None)
        self.max_context_len = metadata.max_context_len
        self.chunk = max(1, min(metadata.max_seq_len, self.decoder.max_tokens_per_call))
        self.fed: list[int] = []  # the ids whose KV rows the draft's cache holds, by position

    def reset(self) -> None:
        self.fed = []


class DraftModelDrafter:
    """Proposes k tokens by running the draft model greedily (or sampling it) after the history.

    The draft's KV cache is kept in step with the target's history: before proposing, only the
    positions after the longest common prefix of what it holds and the history are fed. A rejection
    therefore rewinds it to the accepted tokens (its cache is position-indexed: stale rows are
    overwritten by later writes and masked by position until then).
    """

    def __init__(self, model: DraftModel, sampling: SamplingParams | None = None,
                 rng: np.random.Generator | None = None) -> None:  # fmt: skip
        self.model = model
        self.sampling = sampling
        self._rng = rng if rng is not None else np.random.default_rng()
        self.draft_probs: np.ndarray | None = None  # [k, V] distributions of sampled drafts
        self.unavailable: str | None = None

    def propose(self, history: Sequence[int], k: int) -> list[int]:
        """At most `k` draft tokens after `history` (empty when the draft cannot see the history)."""
        model = self.model
        k = min(k, model.max_context_len - len(history))
        if k <= 0:
            self.unavailable = f"the history ({len(history)} positions) fills the draft model's context"
            return []
        common = 0
        for mine, theirs in zip(model.fed, history, strict=False):
            if mine != theirs:
                break
            common += 1
        common = min(common, len(history) - 1)  # the last token is always (re)fed: its logits are needed
        if NO_TOKEN in history[common:]:
            self.unavailable = "the history holds non-token inputs (images, audio) the draft model cannot read"
            return []
        model.fed = list(history[:common])  # rows past the common prefix are stale from here on
        logits = model.decoder.prefill_ids(list(history[common:]), common, model.chunk)  # [V]
        model.fed = list(history)
        drafts: list[int] = []
        rows: list[np.ndarray] = []
        for j in range(k):
            token = self._choose(to_float32(logits), rows)
            drafts.append(token)
            if j + 1 < k:
                logits = model.decoder.step_token(token, len(history) + j)
                model.fed.append(token)
        self.draft_probs = np.stack(rows) if rows else None
        return drafts

    def accept(self, n: int) -> None:
        """Nothing to do: the next proposal re-aligns the draft's cache with the history."""

    def _choose(self, logits: np.ndarray, rows: list[np.ndarray]) -> int:
        if self.sampling is None:
            return int(logits.argmax())
        q = probabilities(logits[None], self.sampling)[0]  # [V]
        rows.append(q)
        return int(self._rng.choice(q.shape[0], p=q))
