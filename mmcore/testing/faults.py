"""Fault injection for tests of a runner's rollback: make its n-th decoder call fail."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

__all__ = ["failing_decoder_call"]


@contextlib.contextmanager
def failing_decoder_call(runner: Any, n: int, message: str = "injected failure") -> Iterator[None]:
    """Within the block, the runner's `n`-th decoder call raises `RuntimeError(message)`.

    Counts prefill calls (one per chunk) and decode steps, whether they run from Python or natively;
    a native decode step fails right after it ran (its KV-cache write done), and a native token
    prefill after writing the chunks before the failing one: the harder cases to roll back.
    """
    count = {"calls": 0}

    def count_call() -> None:
        count["calls"] += 1
        if count["calls"] == n:
            raise RuntimeError(message)

    decoder = runner.decoder
    generator = runner._generator
    run_decoder = decoder._run_decoder
    prefill = decoder._native_prefill
    loop = generator._greedy_loop

    def flaky_run_decoder(*args: Any) -> Any:
        count_call()
        return run_decoder(*args)

    def flaky_loop(
        token: int,
        pos: int,
        max_steps: int,
        eos_ids: Collection[int],
        on_token: Callable[[int], bool] | None,
        mask: Any = None,
    ) -> list[int]:
        def after_step(new: int) -> bool:
            count_call()
            return on_token(new) if on_token is not None else False

        if mask is None:
            return list(loop(token, pos, max_steps, eos_ids, after_step))
        return list(loop(token, pos, max_steps, eos_ids, after_step, mask))

    class FlakyPrefill:
        """The native token prefill, counting one decoder call per chunk; the chunks before a failing
        one are written, as they would be."""

        def __call__(self, ids: Sequence[int], start_pos: int, chunk: int) -> Any:
            for begin in range(0, len(ids), chunk):
                if count["calls"] + 1 == n and begin:
                    prefill(ids[:begin], start_pos, chunk)
                count_call()
            return prefill(ids, start_pos, chunk)

        def __getattr__(self, name: str) -> Any:  # last_logits, last_argmax, ...
            return getattr(prefill, name)

    decoder._run_decoder = flaky_run_decoder
    if prefill is not None:
        decoder._native_prefill = FlakyPrefill()
    if loop is not None:
        generator._greedy_loop = flaky_loop
    try:
        yield
    finally:
        decoder._run_decoder = run_decoder
        decoder._native_prefill = prefill
        generator._greedy_loop = loop
