"""Cost of constrained decoding: per-token decode time with a nested JSON Schema mask against
unconstrained decoding, and the time to compile a schema.

    python3 bench/structured.py                    # tiny and ~60M programs, XNNPACK
    python3 bench/structured.py --models tiny --repeats 5

The programs are `bench/decode.py`'s (built by `mmcore.testing`, cached). Per mode (greedy: the
native loop reading the bitmask; sampled: temperature 0.8 through the Python sampler), constrained
and unconstrained runs alternate; each run's decode time per token is measured from the first
`Piece` to the end of `generate` (as `bench/decode.py`), and medians are reported. The schema
allows long answers (an array of nested objects); each plain run decodes as many tokens as the
constrained run before it (EOS ignored), so both cover the same positions.

"mask alone" replays the constrained answers through a fresh mask (take the token, compute the
next mask), timing only that. Compile time: building llguidance's view of the vocabulary (once per
runner), compiling the schema with that view built (a cache miss), and a cached compile.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

from mmcore import GenerationConfig, TokensInput
from mmcore.runner import MultimodalRunner
from mmcore.structured import ConstraintCompiler, ResponseFormat
from mmcore.testing import DecoderSpec, ProgramSpec, build_program, build_tokenizer, tokenizer_vocab_size

MODELS: dict[str, Callable[[int], DecoderSpec]] = {
    "tiny": lambda vocab: dataclasses.replace(DecoderSpec.tiny(vocab), max_context_len=512),
    "60M": lambda vocab: dataclasses.replace(DecoderSpec.big(), vocab_size=vocab),
}
TOKENIZER_SIZES = {"tiny": 512, "60M": 32000}
#: A nested schema: objects in an array in an object, enums, bounded numbers, a pattern, a format.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 99999},
        "title": {"type": "string", "maxLength": 16},
        "owner": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 12},
                "email": {"type": "string", "format": "email"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["name", "zip"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                    "price": {"type": "number", "minimum": 0},
                    "tags": {"type": "array", "items": {"enum": ["new", "sale", "gift"]}, "maxItems": 3},
                    "when": {"type": "string", "format": "date"},
                },
                "required": ["sku", "qty", "price"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["id", "title", "owner", "items"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "order", "schema": SCHEMA}}
MODES = {"greedy": {"temperature": 0.0}, "sampled": {"temperature": 0.8, "seed": 0}}


def per_token(runner: MultimodalRunner, prompt: list[int], config: GenerationConfig) -> tuple[float, list[int]]:
    """(decode seconds per token after the first, the ids) of one call."""
    first: list[float] = []
    runner.reset()
    result = runner.generate(
        [TokensInput(prompt)], config, piece_callback=lambda p: first or first.append(time.perf_counter())
    )
    end = time.perf_counter()
    n = len(result.tokens)
    return (end - first[0]) / max(n - 1, 1), result.tokens


def mask_ms(runner: MultimodalRunner, ids: list[int]) -> float:
    """Mean ms per token of the mask alone (take the token, compute the next mask), replaying `ids`."""
    assert runner._constraints is not None
    mask = runner._constraints.compile(FORMAT).start()
    began = time.perf_counter()
    for token in ids:
        mask.advance(token)
    return (time.perf_counter() - began) / max(len(ids), 1) * 1e3


def compile_times(runner: MultimodalRunner, repeats: int) -> dict[str, float]:
    """Median ms: the vocabulary view, a schema compile (cache miss), a cached compile."""
    runner.load()
    vocab, miss, hit = [], [], []
    for i in range(repeats):
        compiler = ConstraintCompiler(runner.tokenizer, runner.metadata.eos_ids, runner.decoder.vocab_width)
        began = time.perf_counter()
        compiler.lltokenizer()
        vocab.append(time.perf_counter() - began)
        fmt = ResponseFormat.json_schema(SCHEMA, name=f"order{i}")
        began = time.perf_counter()
        compiler.compile(fmt)
        miss.append(time.perf_counter() - began)
        began = time.perf_counter()
        compiler.compile(fmt)
        hit.append(time.perf_counter() - began)
    return {k: statistics.median(v) * 1e3 for k, v in (("vocab", vocab), ("miss", miss), ("hit", hit))}


def bench_model(name: str, backend: str, repeats: int, prompt_len: int) -> list[dict[str, Any]]:
    tokenizer = build_tokenizer(vocab_size=TOKENIZER_SIZES[name])
    decoder = MODELS[name](tokenizer_vocab_size(tokenizer))
    pte = build_program(ProgramSpec(decoder=decoder, backend=backend))
    runner = MultimodalRunner(pte, tokenizer)
    prompt = [0, *range(10, 10 + prompt_len - 1)]
    budget = decoder.max_context_len - prompt_len
    compiled = compile_times(runner, repeats)
    rows = []
    for mode, sampling in MODES.items():
        plain = GenerationConfig(echo=False, max_new_tokens=budget, ignore_eos=True, **sampling)  # type: ignore[arg-type]
        constrained = GenerationConfig(echo=False, max_new_tokens=budget, response_format=FORMAT, **sampling)  # type: ignore[arg-type]
        per_token(runner, prompt, plain), per_token(runner, prompt, constrained)  # warm-up (and the compile)
        runs: dict[str, list[tuple[float, list[int]]]] = {"plain": [], "constrained": []}
        for _ in range(repeats):
            # The plain run decodes as many tokens as the constrained answer has, at the same positions.
            runs["constrained"].append(per_token(runner, prompt, constrained))
            same = plain.replace(max_new_tokens=len(runs["constrained"][-1][1]))
            runs["plain"].append(per_token(runner, prompt, same))
        med = {k: statistics.median(s for s, _ in v) * 1e3 for k, v in runs.items()}
        tokens = {k: statistics.median(len(ids) for _, ids in v) for k, v in runs.items()}
        alone = statistics.median(mask_ms(runner, ids) for _, ids in runs["constrained"])
        rows.append({"model": name, "mode": mode, "ms": med, "tokens": tokens, "compile": compiled, "mask_ms": alone})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,60M")
    parser.add_argument("--backend", default="xnnpack", choices=["xnnpack", "portable"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--prompt", type=int, default=16, help="prompt length in tokens")
    args = parser.parse_args()
    print(
        "| program | mode | tokens (plain / constrained) | ms/token plain | constrained | overhead | "
        "mask alone ms/token | vocabulary view ms | schema compile ms | cached ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for r in bench_model(name, args.backend, args.repeats, args.prompt):
            p, c = r["ms"]["plain"], r["ms"]["constrained"]
            comp = r["compile"]
            print(
                f"| {r['model']} | {r['mode']} | {r['tokens']['plain']:.0f} / {r['tokens']['constrained']:.0f} "
                f"| {p:.3f} | {c:.3f} | {(c / p - 1) * 100:+.1f} % | {r['mask_ms']:.3f} | {comp['vocab']:.1f} "
                f"| {comp['miss']:.1f} "
                f"| {comp['hit']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
