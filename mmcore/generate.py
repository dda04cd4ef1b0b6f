"""The decode loop: feed the last token, sample the next, stream it, stop on EOS or request."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from mmcore.sampling import Sampler
from mmcore.stats import Stats

if TYPE_CHECKING:
    from mmcore.speculative.loop import Speculation

__all__ = ["GreedyLoop", "StepFn", "TextTokenGenerator"]

# step(token, pos) -> logits [V] after feeding `token` at position `pos`.
StepFn = Callable[[int, int], npt.NDArray[Any]]


class GreedyLoop(Protocol):
    """loop(token, pos, max_steps, eos_ids, on_token, mask) -> greedy tokens after `token` (see
    NativeGreedyLoop); `mask`, if given, is a bitmask of allowed ids the loop reads before each argmax."""

    def __call__(
        self,
        token: int,
        pos: int,
        max_steps: int,
        eos_ids: Collection[int],
        on_token: Callable[[int], bool] | None,
        mask: npt.NDArray[np.int32] | None = None,
    ) -> list[int]: ...


class TextTokenGenerator:
    """Runs decode steps until EOS, the step budget, a stop request or a callback says stop."""

    def __init__(
        self, step: StepFn, eos_ids: Collection[int], stats: Stats, *, greedy_loop: GreedyLoop | None = None
    ) -> None:
        """`greedy_loop`, if given, runs plain greedy decoding (no penalties, no logprobs) below
        Python; it must give the tokens `step` and a greedy `Sampler` would."""
        self._step = step
        self._greedy_loop = greedy_loop
        self.eos_ids = frozenset(eos_ids)
        self.stats = stats
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the running loop to end after the current step (safe from another thread)."""
        self._stop_requested = True

    def clear_stop(self) -> None:
        self._stop_requested = False

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def generate(
        self,
        token: int,
        start_pos: int,
        max_steps: int,
        sampler: Sampler,
        *,
        ignore_eos: bool = False,
        on_token: Callable[[int], bool] | None = None,
        speculation: Speculation | None = None,
    ) -> list[int]:
        """Tokens sampled after `token` (fed at `start_pos`), at most `max_steps` of them.

        `on_token(id)` is called for each new token and returns True to end generation. With
        `speculation`, drafts are verified several per decoder call (the same greedy tokens; the
        same distribution when sampling).
        """
        if speculation is not None:
            eos = () if ignore_eos else self.eos_ids
            stop_requested = lambda: self._stop_requested  # noqa: E731
            return speculation.run(token, start_pos, max_steps, eos, on_token, stop_requested, self._greedy_loop)
        if self._greedy_loop is not None and sampler.greedy and not sampler.penalized and not sampler.logprobs:
            return self._generate_greedy(self._greedy_loop, token, start_pos, max_steps, ignore_eos, on_token, sampler)
        stats = self.stats
        eos_ids = self.eos_ids
        emitted: list[int] = []
        pos = start_pos
        while len(emitted) < max_steps:
            if self._stop_requested:
                break
            # Forward the last token to get the next token's logits.
            logits = self._step(token, pos)  # [V]
            # Sample the next token.
            began = time.perf_counter()
            token = sampler(logits)
            stats.sampling_time_s += time.perf_counter() - began
            pos += 1
            emitted.append(token)
            # Stream it; the callback or a stop string may end generation.
            if on_token is not None and on_token(token):
                break
            if not ignore_eos and token in eos_ids:
                break
        return emitted

    def _generate_greedy(
        self,
        loop: GreedyLoop,
        token: int,
        start_pos: int,
        max_steps: int,
        ignore_eos: bool,
        on_token: Callable[[int], bool] | None,
        sampler: Sampler,
    ) -> list[int]:
        if self._stop_requested:
            return []
        mask = sampler.mask  # constrained: the loop reads its bitmask, each token advances it

        def after_token(new: int) -> bool:
            if mask is not None:
                mask.advance(new)
            return (on_token is not None and on_token(new)) or self._stop_requested

        eos_ids = () if ignore_eos else self.eos_ids
        if mask is None:
            return loop(token, start_pos, max_steps, eos_ids, after_token)
        return loop(token, start_pos, max_steps, eos_ids, after_token, mask.bitmask)
