"""Fault injection for tests of a runner's rollback: make its n-th decoder call fail."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from typing import Any

__all__ = ["failing_decoder_call"]


@contextlib.contextmanager
def failing_decoder_call(runner: Any, n: int, message: str = "injected failure") -> Iterator[None]:
    """Within the block, the runner's `n`-th decoder call raises `RuntimeError(message)`.

    Counts prefill calls and decode steps, whether a step runs from Python or inside the native
    greedy loop; a native step fails right after it ran (its KV-cache write done), the harder case
    to roll back.
    """
    count = {"calls": 0}

    def count_call() -> None:
        count["calls"] += 1
        if count["calls"] == n:
            raise RuntimeError(message)

    decoder = runner.decoder
    generator = runner._generator
    run_decoder = decoder._run_decoder
    loop = generator._greedy_loop

    def flaky_run_decoder(*args: Any) -> Any:
        count_call()
        return run_decoder(*args)

    def flaky_loop(
        token: int, pos: int, max_steps: int, eos_ids: Collection[int], on_token: Callable[[int], bool] | None
    ) -> list[int]:
        def after_step(new: int) -> bool:
            count_call()
            return on_token(new) if on_token is not None else False

        return list(loop(token, pos, max_steps, eos_ids, after_step))

    decoder._run_decoder = flaky_run_decoder
    if loop is not None:
        generator._greedy_loop = flaky_loop
    try:
        yield
    finally:
        decoder._run_decoder = run_decoder
        generator._greedy_loop = loop
