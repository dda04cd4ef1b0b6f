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
    from mmcore.structured import TokenMask

__all__ = ["Drafter", "Speculation", "SpeculationCounts", "Verifier"]


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
    forbidden: int = 0  # drafts a constraint's mask cut before the decoder call
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
            "draft_tokens_forbidden": self.forbidden,
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

    Constrained (`mask`, the answer's `TokenMask` after the current token): drafts are cut at the
    first token the mask forbids before the decoder call (`TokenMask.accepted_prefix`), each
    verification row is masked as the plain path masks its logits, and the mask follows the
    emitted tokens (rolled back over rejected drafts).
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
        mask: TokenMask | None = None,
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
        self.mask = mask
        counts.native_verification = verifier.native and sampling is None and mask is None

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
        history, counts, policy, mask = self.history, self.counts, self.policy, self.mask

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
                after_plain = _plain_callback(emit, stop_requested, ended, mask)
                bitmask = None if mask is None else mask.bitmask
                plain = greedy_loop(token, pos, min(policy.pause, remaining), eos_ids, after_plain, bitmask)
                policy.plain_tokens(len(plain))
                counts.plain_tokens += len(plain)
                if not plain or ended:
                    break
                pos, token = pos + len(plain), plain[-1]
                continue
            drafts = self.drafter.propose(history, k)[:k] if k > 0 else []
            proposed = len(drafts)
            # Constrained: drafts past the first forbidden one are rejected here, without a decoder
            # call; `allowed` [len(drafts) + 1, V] holds each verification row's mask.
            allowed, forbidden = None, None
            if mask is not None:
                drafts, allowed, forbidden = _walk(mask, drafts)
                counts.forbidden += proposed - len(drafts)
            ids = [token, *drafts]
            # Verify: one call at positions pos..pos+k; row j judges draft j + 1.
            if self.sampling is None and allowed is None:
                row_argmax, n, seconds = self.verifier.greedy(ids, pos)
                new = [*drafts[:n], row_argmax[n]]
            elif self.sampling is None:
                logits, seconds = self.verifier.rows(ids, pos)  # [k + 1, V]
                row_argmax = _masked(logits, allowed).argmax(axis=-1).tolist()
                n = accept_greedy(drafts, row_argmax)
                new = [*drafts[:n], row_argmax[n]]
            else:
                logits, seconds = self.verifier.rows(ids, pos)  # [k + 1, V]
                target = probabilities(_masked(logits, allowed), self.sampling)
                # A forbidden draft stays for the rule, which rejects it at its row (p = 0 there) and
                # draws from the residual, so the output keeps the target's distribution.
                judged = drafts if forbidden is None else [*drafts, forbidden]
                q = self._draft_probs(len(judged), target.shape[1])
                n, after = accept_sampled(judged, target, q, self.rng)
                new = [*drafts[:n], after]
            if mask is not None:
                mask.rollback(len(drafts) - n)  # the mask now follows the accepted drafts
            policy.costs.record(len(ids), seconds)
            policy.update(proposed, n)
            self.drafter.accept(n)
            counts.decoder_calls += 1
            counts.proposed += proposed
            counts.accepted += n
            # Emit the accepted drafts and the target's next token; rejected rows need no undo
            # (later calls overwrite them, and attention masks by position until then).
            stopped = False
            for index, new_token in enumerate(new):
                counts.emitted += 1
                if mask is not None and index == n:
                    mask.advance(new_token)  # the target's own token (drafts were advanced by _walk)
                if emit(new_token):
                    stopped = True
                    if mask is not None and index < n:
                        mask.rollback(n - 1 - index)  # accepted drafts after a stop are not emitted
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


def _walk(mask: TokenMask, drafts: list[int]) -> tuple[list[int], np.ndarray, int | None]:
    """(the drafts the mask allows in order, cut after an EOS; each verification row's allowed ids
    `[len + 1, V]`; the first forbidden draft or None), with `mask` advanced over the kept drafts."""
    count = mask.accepted_prefix(drafts)
    forbidden = drafts[count] if count < len(drafts) else None
    kept: list[int] = []
    rows = [mask.allowed()]  # row 0: after the current token
    for draft in drafts[:count]:
        mask.advance(draft)
        kept.append(draft)
        rows.append(mask.allowed())  # after an EOS a stale copy: that row's token is never emitted
        if draft in mask.eos_ids:
            forbidden = None  # drafts after an EOS are never reached
            break
    return kept, np.stack(rows), forbidden


def _masked(logits: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """`logits` `[T, V]` with the ids each row's mask forbids at -inf (unchanged without a mask)."""
    if allowed is None:
        return logits
    return np.where(allowed[:, : logits.shape[1]], logits, np.float32(-np.inf))


def _plain_callback(
    emit: Callable[[int], bool], stop_requested: Callable[[], bool], ended: list[bool], mask: TokenMask | None
) -> Callable[[int], bool]:
    """The native loop's per-token callback: advance the mask, emit, and note in `ended` that
    generation should end."""

    def after(new: int) -> bool:
        if mask is not None:
            mask.advance(new)
        if emit(new) or stop_requested():
            ended.append(True)
        return bool(ended)

    return after
