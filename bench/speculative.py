"""Speculative decoding against plain decoding and ExecuTorch's C++ runner, one process, interleaved.

    python3 bench/speculative.py                  # all three tables
    python3 bench/speculative.py --tables decode --repeats 5

Tables:
- ``decode``: decode tokens/s on the ~60M programs for (a) ``copy``: the constructed copy model
  (`bench/copy_model.py`), whose answer repeats its prompt, and (b) ``random``: free generation from
  a random-weight model, where prompt lookup rarely finds a draft that the model agrees with (the
  switch-off has to keep it at plain speed). mmcore with ``speculative="ngram"``, mmcore plain and the
  C++ ``MultimodalRunner`` on the same program, prompt and token budget; every run's text is checked
  to be the same on all three. Decode time counts from the first streamed token to the end.
- ``cost``: the time of one decoder call with k + 1 rows against a 1-row call (k = 1..8), on the tiny
  and ~60M programs, which says what a verified draft costs.
- ``rounding``: the largest difference between the logits of a 9-row call and those of nine 1-row calls
  at the same positions (the ~60M random program), and the smallest top-1/top-2 gap seen, which is
  why greedy speculation gives the plain tokens on these programs.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmcore import GenerationConfig, TokensInput
from mmcore.program import Program
from mmcore.runner import MultimodalRunner
from mmcore.testing import DecoderSpec, ProgramSpec, build_program, build_tokenizer, tokenizer_vocab_size

sys.path.insert(0, str(Path(__file__).parent))
import copy_model

RANDOM_PROMPT, RANDOM_NEW = 48, 160


@dataclasses.dataclass
class Run:
    text: str
    tokens: int
    decode_s: float  # first streamed piece -> end
    total_s: float
    extra: dict[str, Any]


def run_mmcore(runner: MultimodalRunner, prompt: list[int], max_new: int, speculative: str | None) -> Run:
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=max_new, speculative=speculative)
    first: list[float] = []
    pieces: list[str] = []

    def on_piece(piece: str) -> None:
        if not first:
            first.append(time.perf_counter())
        pieces.append(piece)

    runner.reset()
    start = time.perf_counter()
    result = runner.generate([TokensInput(prompt)], config, token_callback=on_piece)
    end = time.perf_counter()
    return Run("".join(pieces), len(result.tokens), end - first[0], end - start, dict(result.stats.extra))


def run_cpp(runner: Any, prompt: list[int], max_new: int) -> Run:
    from executorch.extension.llm.runner import GenerationConfig as CppConfig
    from executorch.extension.llm.runner import make_token_input

    config = CppConfig(echo=False, temperature=0.0, max_new_tokens=max_new, warming=True)
    stamps: list[float] = []
    pieces: list[str] = []

    def on_piece(piece: str) -> None:
        stamps.append(time.perf_counter())
        pieces.append(piece)

    runner.reset()
    start = time.perf_counter()
    runner.generate([make_token_input(prompt)], config, on_piece)
    end = time.perf_counter()
    # The C++ runner also streams the EOS token's text; mmcore does not (docs/executorch-differences.md).
    text = re.sub(r"<\|[a-z_]+\|>$", "", "".join(pieces))
    return Run(text, len(stamps), end - stamps[0], end - start, {})


def random_program() -> tuple[Path, Path]:
    tokenizer = build_tokenizer(vocab_size=32000)
    decoder = dataclasses.replace(DecoderSpec.big(), vocab_size=tokenizer_vocab_size(tokenizer))
    return build_program(ProgramSpec(decoder=decoder, backend="xnnpack", logits="all")), tokenizer


def tiny_program() -> tuple[Path, Path]:
    tokenizer = build_tokenizer(vocab_size=512)
    decoder = dataclasses.replace(DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), max_context_len=512)
    return build_program(ProgramSpec(decoder=decoder, backend="xnnpack", logits="all")), tokenizer


def decode_table(repeats: int) -> None:
    from executorch.extension.llm.runner import MultimodalRunner as CppRunner

    cases: dict[str, tuple[Callable[[], tuple[Path, Path]], list[int], int]] = {
        "copy (a)": (copy_model.build, copy_model.copy_prompt(7)[0], copy_model.OFFSET + 1),
        "random (b)": (random_program, [0, *range(300, 300 + RANDOM_PROMPT - 1)], RANDOM_NEW),
    }
    print(
        "| task | tokens | mmcore ngram tok/s | mmcore plain tok/s | C++ tok/s | ngram / C++ | plain / C++ "
        "| accepted / proposed | decoder calls |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (build, prompt, max_new) in cases.items():
        pte, tokenizer = build()
        ours, theirs = MultimodalRunner(pte, tokenizer), CppRunner(str(pte), str(tokenizer))
        runs: dict[str, list[Run]] = {"ngram": [], "plain": [], "cpp": []}
        for i in range(repeats + 1):  # the first round warms up and is dropped
            sides = list(runs)[i % 3 :] + list(runs)[: i % 3]  # rotated: no side always follows the same one
            for side in sides:
                if side == "cpp":
                    run = run_cpp(theirs, prompt, max_new)
                else:
                    run = run_mmcore(ours, prompt, max_new, "ngram" if side == "ngram" else None)
                if i:
                    runs[side].append(run)
        texts = {side: {r.text for r in rs} for side, rs in runs.items()}
        if not all(t == texts["plain"] and len(t) == 1 for t in texts.values()):
            raise SystemExit(f"{name}: the three sides disagree on the text: {texts}")
        rate = {side: statistics.median((r.tokens - 1) / r.decode_s for r in rs) for side, rs in runs.items()}
        spec = runs["ngram"][-1].extra.get("speculative", {})
        print(
            f"| {name} | {runs['plain'][0].tokens} | {rate['ngram']:.1f} | {rate['plain']:.1f} | {rate['cpp']:.1f} "
            f"| {rate['ngram'] / rate['cpp']:.2f} | {rate['plain'] / rate['cpp']:.2f} "
            f"| {spec.get('draft_tokens_accepted', 0)} / {spec.get('draft_tokens_proposed', 0)} "
            f"| {spec.get('decoder_calls', '-')} |",
            flush=True,
        )


def _decoder_inputs(program: Program, rows: int, start: int) -> list[Any]:
    import torch

    spec = program.method_spec("text_decoder")
    dim = spec.inputs[0].shape[-1]
    embeds = torch.randn(1, rows, dim, generator=torch.Generator().manual_seed(rows))  # [1, rows, D]
    return [embeds, torch.tensor([start], dtype=torch.int64)]


def cost_table(repeats: int) -> None:
    print("| program | 1-row call ms | " + " | ".join(f"k={k}" for k in range(1, 9)) + " |")
    print("|---|---|" + "---|" * 8)
    for name, build in (("tiny", tiny_program), ("60M", random_program)):
        pte, _ = build()
        method = Program(pte).method("text_decoder")
        inputs = {rows: _decoder_inputs(Program(pte), rows, 16) for rows in range(1, 10)}
        times: dict[int, list[float]] = {rows: [] for rows in inputs}
        for rows in inputs:  # warm-up
            method.execute(inputs[rows])
        for _ in range(repeats):
            for rows, args in inputs.items():  # interleaved over row counts
                t0 = time.perf_counter()
                method.execute(args)
                times[rows].append(time.perf_counter() - t0)
        med = {rows: statistics.median(t) for rows, t in times.items()}
        ratios = " | ".join(f"{med[k + 1] / med[1]:.2f}x" for k in range(1, 9))
        print(f"| {name} | {med[1] * 1e3:.3f} | {ratios} |", flush=True)


def rounding_table() -> None:
    pte, _ = random_program()
    program = Program(pte)
    method = program.method("text_decoder")
    prompt_rows, rows = 48, 9
    method.execute(_decoder_inputs(program, prompt_rows, 0))  # a prompt in the KV cache
    block = _decoder_inputs(program, rows, prompt_rows)
    together = np.asarray(method.execute(block)[0], dtype=np.float32)[0]  # [rows, V]
    single = []
    for r in range(rows):
        one = [block[0][:, r : r + 1], block[1].new_tensor([prompt_rows + r])]
        single.append(np.asarray(method.execute(one)[0], dtype=np.float32).reshape(-1))  # [V]
    apart = np.stack(single)  # [rows, V]
    diff = float(np.abs(together - apart).max())
    top2 = np.sort(apart, axis=1)[:, -2:]
    gap = float((top2[:, 1] - top2[:, 0]).min())
    same = bool((together.argmax(1) == apart.argmax(1)).all())
    print(
        "| program | rows | max abs logit difference (9-row vs 1-row calls) | smallest top-1/top-2 gap | same argmax |"
    )
    print("|---|---|---|---|---|")
    print(f"| 60M random | {rows} | {diff:.3g} | {gap:.3g} | {same} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="decode,cost,rounding")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tables = args.tables.split(",")
    if "decode" in tables:
        decode_table(args.repeats)
    if "cost" in tables:
        cost_table(max(args.repeats, 20))
    if "rounding" in tables:
        rounding_table()


if __name__ == "__main__":
    main()
