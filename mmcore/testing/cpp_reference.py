"""ExecuTorch's C++ MultimodalRunner (through its Python binding) as a token-id reference."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmcore.testing.tokenizer import piece_table

__all__ = ["cpp_generate", "until_stop"]


def cpp_generate(pte: Path, tokenizer_dir: Path, items: Sequence[tuple[str, Any]], max_new_tokens: int) -> list[int]:
    """Greedy ids of the C++ runner on ``("tokens", ids)`` / ``("image"|"audio", tensor)`` items.

    The binding streams text pieces; they map back to ids through the tokenizer's piece table, which
    requires every id's single-token decode to be unique (the test tokenizers guarantee it).
    """
    from executorch.extension.llm import runner as et

    made = []
    for kind, value in items:
        if kind == "tokens":
            made.append(et.make_token_input(list(value)))
        elif kind == "image":
            made.append(et.make_image_input(value.contiguous()))
        else:
            made.append(et.make_audio_input(value.contiguous()))
    pieces = piece_table(tokenizer_dir)
    streamed: list[str] = []
    runner = et.MultimodalRunner(str(pte), str(tokenizer_dir))
    config = et.GenerationConfig(echo=False, temperature=0.0, max_new_tokens=max_new_tokens, warming=True)
    runner.generate(made, config, streamed.append)
    return [pieces[p] for p in streamed]


def until_stop(ids: Sequence[int], stop: int) -> list[int]:
    """``ids`` up to and including the first ``stop``."""
    out = list(ids)
    return out[: out.index(stop) + 1] if stop in out else out
