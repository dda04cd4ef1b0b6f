"""Decode speed and time to first token: mmcore vs ExecuTorch's C++ MultimodalRunner, one process.

    python3 bench/decode.py                      # tiny and ~60M programs, XNNPACK
    python3 bench/decode.py --models tiny --repeats 5

Both runners load the same `.pte` (built by `mmcore.testing`, cached) and the same tokenizer, and
run greedy generation from the same prompt, interleaved, several times; medians are reported.
Decode time per token is measured from the first token (mmcore's first `Piece`, the C++ runner's
first callback) to the end of `generate`; time to first token from the call to that first token,
both interleaved and "after itself" (each runner called twice in a row, the second call counting).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmcore import GenerationConfig, TokensInput
from mmcore.runner import MultimodalRunner
from mmcore.testing import DecoderSpec, ProgramSpec, build_program, build_tokenizer, tokenizer_vocab_size

MODELS: dict[str, Callable[[int], DecoderSpec]] = {
    "tiny": lambda vocab: dataclasses.replace(DecoderSpec.tiny(vocab), max_context_len=512),
    "60M": lambda vocab: dataclasses.replace(DecoderSpec.big(), vocab_size=vocab),
}
TOKENIZER_SIZES = {"tiny": 512, "60M": 32000}


@dataclasses.dataclass
class Timing:
    ttft_s: float
    decode_s_per_token: float
    tokens: int


def time_mmcore(runner: MultimodalRunner, prompt: list[int], max_new_tokens: int) -> Timing:
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=max_new_tokens)
    first: list[float] = []
    runner.reset()
    start = time.perf_counter()
    result = runner.generate(
        [TokensInput(prompt)], config, token_callback=lambda _: first or first.append(time.perf_counter())
    )
    end = time.perf_counter()
    n = len(result.tokens)
    return Timing(first[0] - start, (end - first[0]) / max(n - 1, 1), n)


def time_cpp(runner: Any, prompt: list[int], max_new_tokens: int) -> Timing:
    from executorch.extension.llm.runner import GenerationConfig as CppConfig
    from executorch.extension.llm.runner import make_token_input

    config = CppConfig(echo=False, temperature=0.0, max_new_tokens=max_new_tokens, warming=True)
    stamps: list[float] = []
    runner.reset()
    start = time.perf_counter()
    runner.generate([make_token_input(prompt)], config, lambda _: stamps.append(time.perf_counter()))
    end = time.perf_counter()
    return Timing(stamps[0] - start, (end - stamps[0]) / max(len(stamps) - 1, 1), len(stamps))


def bench_model(name: str, backend: str, repeats: int, prompt_len: int) -> dict[str, Any]:
    from executorch.extension.llm.runner import MultimodalRunner as CppRunner

    tokenizer = build_tokenizer(vocab_size=TOKENIZER_SIZES[name])
    decoder = MODELS[name](tokenizer_vocab_size(tokenizer))
    pte = build_program(ProgramSpec(decoder=decoder, backend=backend))
    ours = MultimodalRunner(pte, tokenizer)
    theirs = CppRunner(str(pte), str(tokenizer))
    prompt = [0, *range(10, 10 + prompt_len - 1)]
    max_new = decoder.max_context_len - prompt_len
    time_mmcore(ours, prompt, max_new), time_cpp(theirs, prompt, max_new)  # warm-up
    runs: dict[str, list[Timing]] = {"mmcore": [], "cpp": []}
    for _ in range(repeats):
        runs["mmcore"].append(time_mmcore(ours, prompt, max_new))
        runs["cpp"].append(time_cpp(theirs, prompt, max_new))
    med = {
        k: (statistics.median(t.decode_s_per_token for t in v), statistics.median(t.ttft_s for t in v))
        for k, v in runs.items()
    }
    # Interleaving makes each runner start right after the other one's long decode, which moves TTFT
    # (caches, thread-pool state) by up to 30 % either way; so TTFT is also measured "after itself":
    # each runner runs twice in a row and the second call's TTFT counts (still alternating runners).
    after_itself: dict[str, list[float]] = {"mmcore": [], "cpp": []}
    for _ in range(repeats):
        time_mmcore(ours, prompt, max_new)
        after_itself["mmcore"].append(time_mmcore(ours, prompt, max_new).ttft_s)
        time_cpp(theirs, prompt, max_new)
        after_itself["cpp"].append(time_cpp(theirs, prompt, max_new).ttft_s)
    return {
        "model": name,
        "backend": backend,
        "pte_mb": Path(pte).stat().st_size / 1e6,
        "prompt": prompt_len,
        "tokens": (runs["mmcore"][0].tokens, runs["cpp"][0].tokens),
        "decode_ms": (med["mmcore"][0] * 1e3, med["cpp"][0] * 1e3),
        "ttft_ms": (med["mmcore"][1] * 1e3, med["cpp"][1] * 1e3),
        "ttft_after_itself_ms": tuple(statistics.median(after_itself[k]) * 1e3 for k in ("mmcore", "cpp")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,60M")
    parser.add_argument("--backend", default="xnnpack", choices=["xnnpack", "portable"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--prompt", type=int, default=48, help="prompt length in tokens")
    args = parser.parse_args()
    print(
        "| program | backend | prompt | tokens (mmcore / C++) | decode ms/token mmcore | C++ | ratio | "
        "TTFT ms mmcore | C++ | ratio | TTFT after itself ms mmcore | C++ | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        r = bench_model(name, args.backend, args.repeats, args.prompt)
        (dm, dc), (tm, tc), (bm, bc) = r["decode_ms"], r["ttft_ms"], r["ttft_after_itself_ms"]
        print(
            f"| {name} ({r['pte_mb']:.1f} MB) | {r['backend']} | {r['prompt']} | {r['tokens'][0]} / {r['tokens'][1]} "
            f"| {dm:.3f} | {dc:.3f} | {dm / dc:.3f} | {tm:.2f} | {tc:.2f} | {tm / tc:.3f} "
            f"| {bm:.2f} | {bc:.2f} | {bm / bc:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
