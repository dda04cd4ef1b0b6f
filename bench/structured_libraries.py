"""llguidance vs xgrammar vs outlines-core on mmcore's tokenizers: mask time per token, compile time
and correctness (the comparison behind docs/structured-output.md's choice).

    pip install llguidance xgrammar outlines-core      # xgrammar pulls in torch
    python3 bench/structured_libraries.py
    python3 bench/structured_libraries.py --answers 5 --tokenizers hf-byte-level,tekken

Tokenizers (each loaded by mmcore-text, whose `byte_vocabulary()` gives every library the same token
bytes): the 32000-token byte-level BPE of `mmcore.testing`, the same merges as a tiktoken file and
as Tekken (`tekken.json`), and a SentencePiece BPE model (byte fallback, 8000 pieces) trained on the
same corpus. The schema is nested (objects in an array in an object, enums, bounded integers, a
pattern, a date) with compact JSON (no free whitespace) in every library.

Per tokenizer:
1. Reference answers: `--answers` token sequences sampled from random logits under llguidance's
   mask, each validated with `jsonschema`.
2. Each library replays every reference answer: per token it takes the token and computes the
   next mask (timed; median and mean microseconds per token), and we check that it allows every
   token, allows EOS at the end, and how often its mask equals llguidance's.
3. Each library samples its own `--answers` answers from random logits under its mask; reported:
   how many parse and validate with `jsonschema` within 600 tokens.
Compile time is schema -> matcher with the library's vocabulary view built; the view's own build
time is reported separately. The numbers come from a machine shared with other work.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 99999},
        "title": {"type": "string", "maxLength": 16},
        "owner": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 12},
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
                    "tag": {"enum": ["new", "sale", "gift"]},
                    "when": {"type": "string", "format": "date"},
                },
                "required": ["sku", "qty", "tag"],
                "additionalProperties": False,
            },
            "maxItems": 3,
        },
    },
    "required": ["id", "title", "owner", "items"],
    "additionalProperties": False,
}
MAX_TOKENS = 600


# -- tokenizers ------------------------------------------------------------------------------------
def build_tokenizers(root: Path) -> dict[str, Path]:
    """The tokenizer files, built into `root` (the 32000-token BPE itself is cached by mmcore.testing)."""
    import sentencepiece
    from tokenizers import Tokenizer as HFBackend

    from mmcore.testing import build_tokenizer
    from mmcore.testing.hf._tekken import _ranked_tokens, write_tekken
    from mmcore.testing.tokenizer import _sentences

    hf = build_tokenizer(vocab_size=32000)
    backend = HFBackend.from_file(str(hf / "tokenizer.json"))
    tekken = root / "tekken.json"
    write_tekken(tekken, backend, {})
    tiktoken = root / "tokenizer.model"  # Llama 3's name for its tiktoken file
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for rank, tok in enumerate(_ranked_tokens(backend))]
    tiktoken.write_text("\n".join(lines) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(_sentences(32000))), model_prefix=str(root / "sp"), vocab_size=8000,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    return {"hf-byte-level": hf, "sentencepiece": root / "sp.model", "tiktoken": tiktoken, "tekken": tekken}


class Vocab:
    """What every library is given: token bytes (special tokens flagged), the EOS ids, the width."""

    def __init__(self, path: Path) -> None:
        import mmcore_text

        self.tokenizer = mmcore_text.load(path)
        table, special = self.tokenizer.byte_vocabulary()
        self.table: list[bytes] = list(table)
        self.special = set(special)
        self.eos = sorted(self.tokenizer.eos_ids) or [1]
        self.size = len(self.table)


# -- the libraries, behind one small interface ---------------------------------------------------------
class Matcher:
    """advance(token) takes a token and fills `bitmask` for the next one; `allowed()` reads it."""

    bitmask: np.ndarray

    def advance(self, token: int) -> None: ...

    def allowed(self, size: int) -> np.ndarray:
        return np.unpackbits(self.bitmask.view(np.uint8), bitorder="little", count=size).astype(bool)


class LLGuidance:
    name = "llguidance"

    def __init__(self, vocab: Vocab) -> None:
        from mmcore.structured import ConstraintCompiler

        self.vocab = vocab
        self.compiler = ConstraintCompiler(vocab.tokenizer, vocab.eos, vocab.size)
        self.compiler.lltokenizer()

    def compile(self, schema: dict[str, Any]) -> Callable[[], Matcher]:
        from mmcore.structured import ResponseFormat

        strict = {**schema, "x-guidance": {"whitespace_flexible": False}}
        constraint = self.compiler.compile(ResponseFormat.json_schema(strict))

        def start() -> Matcher:
            mask = constraint.start()
            matcher = Matcher()
            matcher.bitmask = mask.bitmask
            matcher.advance = mask.advance  # type: ignore[method-assign]
            return matcher

        return start


class XGrammar:
    name = "xgrammar"

    def __init__(self, vocab: Vocab) -> None:
        import xgrammar as xgr

        self.vocab = vocab
        encoded = [b"" if i in vocab.special else piece for i, piece in enumerate(vocab.table)]
        info = xgr.TokenizerInfo(encoded, xgr.VocabType.RAW, vocab_size=vocab.size, stop_token_ids=vocab.eos)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def compile(self, schema: dict[str, Any]) -> Callable[[], Matcher]:
        import xgrammar as xgr

        grammar = self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))
        size = self.vocab.size

        def start() -> Matcher:
            inner = xgr.GrammarMatcher(grammar)
            bits = xgr.allocate_token_bitmask(1, size)  # torch int32 [1, ceil(V / 32)]
            matcher = Matcher()
            matcher.bitmask = bits.numpy()[0]  # shares memory with `bits`

            def advance(token: int) -> None:
                if not inner.accept_token(token):
                    raise ValueError(f"xgrammar rejects token {token}")
                if not inner.is_terminated():
                    inner.fill_next_token_bitmask(bits)

            inner.fill_next_token_bitmask(bits)
            matcher.advance = advance  # type: ignore[method-assign]
            return matcher

        return start


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, vocab: Vocab) -> None:
        from outlines_core import Vocabulary

        self.vocab = vocab
        pieces: dict[bytes, list[int]] = {}
        for i, piece in enumerate(vocab.table):
            if i not in vocab.special and piece:
                pieces.setdefault(piece, []).append(i)
        self.vocabulary = Vocabulary(vocab.eos[0], pieces)

    def compile(self, schema: dict[str, Any]) -> Callable[[], Matcher]:
        from outlines_core import Guide, Index
        from outlines_core.json_schema import build_regex_from_schema

        index = Index(build_regex_from_schema(json.dumps(schema), ""), self.vocabulary)
        words = (self.vocab.size + 31) // 32

        def start() -> Matcher:
            guide = Guide(index)
            matcher = Matcher()
            matcher.bitmask = np.zeros(words, dtype=np.int32)

            def fill() -> None:
                matcher.bitmask[:] = 0
                guide.write_mask_into(matcher.bitmask.ctypes.data, words, 4)

            def advance(token: int) -> None:
                guide.advance(token, return_tokens=False)
                fill()

            fill()
            matcher.advance = advance  # type: ignore[method-assign]
            return matcher

        return start


LIBRARIES: dict[str, Any] = {"llguidance": LLGuidance, "xgrammar": XGrammar, "outlines-core": OutlinesCore}


# -- measurements ----------------------------------------------------------------------------------
def sample(start: Callable[[], Matcher], vocab: Vocab, seed: int, errors: list[str]) -> tuple[list[int], bool]:
    """Ids sampled from random logits under a library's mask; whether EOS came within MAX_TOKENS
    (a library failing on a token its mask allowed: False, the message appended to `errors`)."""
    rng = np.random.default_rng(seed)
    matcher = start()
    ids: list[int] = []
    for _ in range(MAX_TOKENS):
        allowed = matcher.allowed(vocab.size)
        if not allowed.any():
            return ids, False
        logits = np.where(allowed, rng.standard_normal(vocab.size) * 3, -np.inf)  # [V]
        probs = np.exp(logits - logits.max())
        token = int(rng.choice(vocab.size, p=probs / probs.sum()))
        if token in vocab.eos:
            return ids, True
        try:
            matcher.advance(token)
        except Exception as exc:  # noqa: BLE001 - a library refusing a token its own mask allowed
            errors.append(f"{type(exc).__name__}: {exc}"[:100])
            return ids, False
        ids.append(token)
    return ids, False


def valid(vocab: Vocab, ids: list[int]) -> bool:
    try:
        jsonschema.validate(json.loads(b"".join(vocab.table[i] for i in ids)), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def replay(
    start: Callable[[], Matcher], vocab: Vocab, answers: list[list[int]], reference: list[list[np.ndarray]]
) -> dict[str, Any]:
    """Per-token mask times over the reference answers; whether every token and the final EOS were
    allowed; the share of masks equal to llguidance's."""
    times: list[float] = []
    agree = total = 0
    accepted = True
    for ids, ref_masks in zip(answers, reference, strict=True):
        matcher = start()
        for step, token in enumerate(ids):
            allowed = matcher.allowed(vocab.size)
            agree += bool(np.array_equal(allowed, ref_masks[step]))
            total += 1
            if not allowed[token]:
                accepted = False
                break
            began = time.perf_counter()
            matcher.advance(token)
            times.append(time.perf_counter() - began)
        else:
            allowed = matcher.allowed(vocab.size)
            agree += bool(np.array_equal(allowed, ref_masks[-1]))
            total += 1
            accepted = accepted and bool(allowed[vocab.eos].any())
    return {
        "median_us": statistics.median(times) * 1e6 if times else float("nan"),
        "mean_us": statistics.fmean(times) * 1e6 if times else float("nan"),
        "accepts_reference": accepted,
        "mask_agreement": agree / total if total else 0.0,
    }


def reference_masks(start: Callable[[], Matcher], vocab: Vocab, ids: list[int]) -> list[np.ndarray]:
    matcher = start()
    masks = [matcher.allowed(vocab.size)]
    for token in ids:
        matcher.advance(token)
        masks.append(matcher.allowed(vocab.size))
    return masks


def bench_tokenizer(name: str, path: Path, answers: int) -> list[dict[str, Any]]:
    vocab = Vocab(path)
    built: dict[str, tuple[Any, float, Callable[[], Matcher] | None, float, str]] = {}
    for lib, cls in LIBRARIES.items():
        began = time.perf_counter()
        adapter = cls(vocab)
        view_s = time.perf_counter() - began
        began = time.perf_counter()
        try:
            start: Callable[[], Matcher] | None = adapter.compile(SCHEMA)
            error = ""
        except Exception as exc:  # noqa: BLE001 - a library's failure is a result
            start, error = None, f"{type(exc).__name__}: {exc}"[:80]
        built[lib] = (adapter, view_s, start, time.perf_counter() - began, error)
    ll_start = built["llguidance"][2]
    assert ll_start is not None
    reference: list[list[int]] = []
    seed = 0
    while len(reference) < answers and seed < answers * 10:
        ids, ended = sample(ll_start, vocab, 1000 + seed, [])
        seed += 1
        if ended and valid(vocab, ids):
            reference.append(ids)
    ref_masks = [reference_masks(ll_start, vocab, ids) for ids in reference]
    rows = []
    for lib, (_, view_s, start, compile_s, error) in built.items():
        row: dict[str, Any] = {"tokenizer": f"{name} ({vocab.size})", "library": lib, "view_ms": view_s * 1e3,
                               "compile_ms": compile_s * 1e3, "error": error}  # fmt: skip
        if start is not None:
            row.update(replay(start, vocab, reference, ref_masks))
            errors: list[str] = []
            own = [sample(start, vocab, seed, errors) for seed in range(answers)]
            row["own_valid"] = sum(ended and valid(vocab, ids) for ids, ended in own)
            row["own_errors"] = len(errors)
            if errors:
                print(f"  {lib} on {name}: {len(errors)} answer(s) failed: {errors[0]}", file=sys.stderr, flush=True)
            row["own_total"] = answers
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizers", default="hf-byte-level,sentencepiece,tiktoken,tekken")
    parser.add_argument("--answers", type=int, default=8, help="reference answers (and own answers) per tokenizer")
    args = parser.parse_args()
    from importlib.metadata import version

    import llguidance  # noqa: F401 - imported (with torch, for xgrammar) before anything is timed
    import outlines_core  # noqa: F401
    import xgrammar  # noqa: F401

    print(", ".join(f"{name} {version(name)}" for name in ("llguidance", "xgrammar", "outlines-core")), flush=True)
    print(
        "| tokenizer | library | vocabulary view ms | schema compile ms | mask µs/token median | mean | "
        "accepts llguidance's answers | masks equal to llguidance's | own answers valid | own answers failing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_tokenizers(Path(tmp))
        for name in args.tokenizers.split(","):
            for r in bench_tokenizer(name, paths[name], args.answers):
                if r["error"]:
                    print(
                        f"| {r['tokenizer']} | {r['library']} | {r['view_ms']:.0f} | failed: {r['error']} | | | | | | |"
                    )
                    continue
                print(
                    f"| {r['tokenizer']} | {r['library']} | {r['view_ms']:.0f} | {r['compile_ms']:.0f} "
                    f"| {r['median_us']:.0f} | {r['mean_us']:.0f} | {'yes' if r['accepts_reference'] else 'NO'} "
                    f"| {r['mask_agreement'] * 100:.1f} % | {r['own_valid']} / {r['own_total']} | {r['own_errors']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
