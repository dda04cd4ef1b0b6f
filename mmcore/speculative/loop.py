"""The speculative decode loop: propose drafts, verify them in one decoder call, emit what is accepted."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mmcore.decoder import MultimodalDecoderRunner, TextDecoderRunner
from mmcore.speculative.policy import CallCosts, DraftPolicy
from mmcore.speculative.verify import SamplingParams, accept_greedy, accept_sampled, probabilities

if TYPE_CHECKING:
    from mmcore.generate import GreedyLoop

__all__ = ["DraftFilter", "Drafter", "Speculation", "SpeculationCounts", "Verifier"]

#: Cuts drafts before the first token the sampling step would forbid (e.g. a grammar mask), so a
#: forbidden draft is rejected without a decoder call. Identity when None.
DraftFilter = Callable[[list[int]], list[int]]


class Drafter(Protocol):
    """Proposes tokens that may follow the history; told how many of its last proposal were kept."""

    #: Distributions `[k, V]` the last drafts were sampled from, or None for deterministic drafts.
    draft_probs: np.ndarray | None

    def propose(self, history: Sequence[int], k: int) -> list[int]: ...

    def accept(self, n: int) -> None: ...


class Verifier:
    """The target decoder run on the current token plus drafts at positions p..p+k in one call."""

    def __init__(self, decoder: TextDecoderRunner | MultimodalDecoderRunner) -> None:
        self.decoder = decoder
        self._native = decoder.native_verifier()

    @property
    def native(self) -> bool:
        return self._native is not None

    def greedy(self, ids: list[int], pos: int) -> tuple[list[int], int, float]:
        """(each row's first argmax, accepted drafts `ids[1:]`, seconds of the call)."""
        if self._native is not None:
            return self._native(ids, pos)
        began = time.perf_counter()
        logits = self.decoder.step_rows(ids, pos)  # [T, V]
        row_argmax = logits.argmax(axis=-1).tolist()
        return row_argmax, accept_greedy(ids[1:], row_argmax), time.perf_counter() - began

    def rows(self, ids: list[int], pos: int) -> tuple[np.ndarray, float]:
        """(logits `[T, V]` of every row, seconds of the call)."""
        began = time.perf_counter()
        logits = self.decoder.step_rows(ids, pos)  # [T, V]
        return logits, time.perf_counter() - began


@dataclass
class SpeculationCounts:
    """What one generate call's speculation did (reported in `stats.extra["speculative"]`)."""

    method: str
    proposed: int = 0
    accepted: int = 0
    decoder_calls: int = 0
    emitted: int = 0
    plain_tokens: int = 0  # decoded by the native greedy loop while switched off
    switch_offs: int = 0
    native_verification: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, costs: CallCosts) -> dict[str, Any]:
        calls = self.decoder_calls
        return {
            "method": self.method,
            "draft_tokens_proposed": self.proposed,
            "draft_tokens_accepted": self.accepted,
            "acceptance_rate": self.accepted / self.proposed if self.proposed else 0.0,
            "decoder_calls": calls + self.plain_tokens,
            "verification_calls": calls,
            "tokens_per_verification_call": (self.emitted / calls) if calls else 0.0,
            "plain_tokens": self.plain_tokens,
            "switch_offs": self.switch_offs,
            "native_verification": self.native_verification,
            "call_ms_by_rows": {rows: round(s * 1e3, 4) for rows, s in costs.curve().items()},
            **self.extra,
        }


class Speculation:
    """One `generate` call's speculative decoding over `history` (the ids at positions 0.. and the
    current token last; `NO_TOKEN` where an input was embeddings).

    Greedy (`sampling` None): a call emits the accepted drafts and the target's own next token, so
    the ids are those of plain greedy decoding. Sampled: the rejection rule keeps the output
    distributed as the target's, with `rng` (seeded) the only source of randomness.
    """

    def __init__(
        self,
        drafter: Drafter,
        verifier: Verifier,
        policy: DraftPolicy,
        history: list[int],
        *,
        max_context_len: int,
        counts: SpeculationCounts,
        sampling: SamplingParams | None = None,
        rng: np.random.Generator | None = None,
        filter_drafts: DraftFilter | None = None,
    ) -> None:
        self.drafter = drafter
        self.verifier = verifier
        self.policy = policy
        self.history = history
        self.max_context_len = max_context_len
        self.max_rows = verifier.decoder.max_tokens_per_call
        self.counts = counts
        self.sampling = sampling
        self.rng = rng if rng is not None else np.random.default_rng()
        self.filter_drafts = filter_drafts
        counts.native_verification = verifier.native and sampling is None

    def run(
        self,
        token: int,
        start_pos: int,
        max_steps: int,
        eos_ids: Collection[int],
        on_token: Callable[[int], bool] | None,
        stop_requested: Callable[[], bool],
        greedy_loop: GreedyLoop | None = None,
    ) -> list[int]:
        """Tokens after `token` (fed at `start_pos`): at most `max_steps`, ending after an id in
        `eos_ids`, when `on_token(id)` returns True or `stop_requested()` turns True."""
        emitted: list[int] = []
        history, counts, policy = self.history, self.counts, self.policy

        def emit(new: int) -> bool:
            emitted.append(new)
            history.append(new)
            return (on_token is not None and on_token(new)) or new in eos_ids or stop_requested()

        pos = start_pos
        while len(emitted) < max_steps and not stop_requested():
            remaining = max_steps - len(emitted)
            # Room for k drafts: each needs a token of budget, a row of the call and a position.
            k = policy.next_k(min(remaining - 1, self.max_rows - 1, self.max_context_len - 1 - pos))
            if k == 0 and policy.pause > 0 and greedy_loop is not None and self.sampling is None:
                # Switched off: decode plainly below Python for the pause.
                ended: list[bool] = []
                after_plain = _plain_callback(emit, stop_requested, ended)
                plain = greedy_loop(token, pos, min(policy.pause, remaining), eos_ids, after_plain)
                policy.plain_tokens(len(plain))
                counts.plain_tokens += len(plain)
                if not plain or ended:
                    break
                pos, token = pos + len(plain), plain[-1]
                continue
            drafts = self.drafter.propose(history, k)[:k] if k > 0 else []
            if self.filter_drafts is not None and drafts:
                drafts = self.filter_drafts(drafts)
            ids = [token, *drafts]
            # Verify: one call at positions pos..pos+k; row j judges draft j + 1.
            if self.sampling is None:
                row_argmax, n, seconds = self.verifier.greedy(ids, pos)
                new = [*drafts[:n], row_argmax[n]]
            else:
                logits, seconds = self.verifier.rows(ids, pos)  # [k + 1, V]
                target = probabilities(logits, self.sampling)
                n, after = accept_sampled(drafts, target, self._draft_probs(len(drafts), target.shape[1]), self.rng)
                new = [*drafts[:n], after]
            policy.costs.record(len(ids), seconds)
            policy.update(len(drafts), n)
            self.drafter.accept(n)
            counts.decoder_calls += 1
            counts.proposed += len(drafts)
            counts.accepted += n
            # Emit the accepted drafts and the target's next token; rejected rows need no undo
            # (later calls overwrite them, and attention masks by position until then).
            stopped = False
            for new_token in new:
                counts.emitted += 1
                if emit(new_token):
                    stopped = True
                    break
            if stopped:
                break
            pos, token = pos + len(new), new[-1]
        counts.switch_offs = policy.switch_offs
        return emitted

    def _draft_probs(self, k: int, width: int) -> np.ndarray | None:
        probs = self.drafter.draft_probs
        if probs is None or k == 0:
            return None
        probs = probs[:k]
        if probs.shape[1] < width:  # a draft with a narrower vocabulary puts no mass on the rest
            probs = np.pad(probs, ((0, 0), (0, width - probs.shape[1])))
        return probs


def _plain_callback(
    emit: Callable[[int], bool], stop_requested: Callable[[], bool], ended: list[bool]
) -> Callable[[int], bool]:
    """The native loop's per-token callback: emit, and note in `ended` that generation should end."""

    def after(new: int) -> bool:
        if emit(new) or stop_requested():
            ended.append(True)
        return bool(ended)

    return after
