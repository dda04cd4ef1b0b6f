"""Speculative decoding: the same greedy ids as plain decoding, the rejection rule's distribution,
no undo for rejected rows (position-indexed caches, sliding windows), refusal where it cannot be
correct (last-row logits, ring buffers), and the controls (stop strings, EOS, stop(), streaming,
sessions, seeds, config, CLI)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmcore import GenerationConfig, TokensInput
from mmcore.assemble import load_config
from mmcore.cli import main
from mmcore.errors import ConfigError
from mmcore.inputs import EmbeddingsInput
from mmcore.inspection import inspect_program
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore.session import Session
from mmcore.speculative import (
    CallCosts,
    DraftPolicy,
    NgramDrafter,
    SpeculativeConfig,
    accept_greedy,
    accept_sampled,
)
from mmcore.speculative.ngram import NO_TOKEN

GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=48, ignore_eos=True)
# A prompt with repeats, so prompt lookup finds drafts (and the tiny models echo some of it).
PROMPT = [0, *range(20, 36), *range(20, 30), 70, 71, *range(20, 28)]
FORCED = SpeculativeConfig(method="ngram", num_draft_tokens=6, adaptive=False)


@pytest.fixture(scope="module")
def text_all(make_spec: Any, program_path: Any) -> Path:
    return program_path(make_spec(kind="text", logits="all"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def multimodal_all(make_spec: Any, program_path: Any) -> Path:
    return program_path(make_spec(logits="all"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def other_draft(make_spec: Any, program_path: Any) -> Path:
    """A different random model with the same vocabulary: its drafts are mostly rejected."""
    return program_path(make_spec(kind="text", decoder_seed=7))  # type: ignore[no-any-return]


def _run(runner: Any, prompt: Any, config: GenerationConfig, **kwargs: Any) -> Any:
    runner.reset()
    return runner.generate(prompt, config, **kwargs)


# -- pieces ---------------------------------------------------------------------------------------


def test_ngram_drafter_continues_the_longest_most_recent_match() -> None:
    drafter = NgramDrafter(max_ngram=3, min_ngram=1)
    # (1, 2, 3) occurred at 0..2 -> continue with 4, 9, 2; the 2-gram (2, 3) alone would give 5.
    assert drafter.propose([1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3], 3) == [4, 9, 2]
    assert NgramDrafter().propose([7, 8, 9], 4) == []
    # Drafts stop at a position holding no token (an image row).
    assert NgramDrafter().propose([5, 6, NO_TOKEN, 4, 5], 3) == [6]


def test_greedy_acceptance_is_the_agreeing_prefix() -> None:
    assert accept_greedy([4, 5, 6], [4, 5, 7, 8]) == 2
    assert accept_greedy([4, 5, 6], [1, 5, 6, 8]) == 0
    assert accept_greedy([4, 5, 6], [4, 5, 6, 8]) == 3


@pytest.mark.parametrize("deterministic", [True, False])
def test_rejection_rule_emits_the_target_distribution(deterministic: bool) -> None:
    rng = np.random.default_rng(0)
    target = rng.dirichlet(np.ones(5), size=3)  # [k + 1, V]
    draft = rng.dirichlet(np.ones(5), size=2)  # [k, V]
    trials, counts = 40000, np.zeros(5)
    for _ in range(trials):
        if deterministic:
            drafts, q = [2, 0], None
        else:
            drafts, q = [int(rng.choice(5, p=draft[0])), int(rng.choice(5, p=draft[1]))], draft
        n, after = accept_sampled(drafts, target, q, rng)
        counts[drafts[0] if n > 0 else after] += 1
    np.testing.assert_allclose(counts / trials, target[0], atol=0.01)


def test_policy_switches_off_when_wide_calls_do_not_pay_and_speculates_when_they_do() -> None:
    costs = CallCosts()
    costs.record(1, 1.0)
    costs.record(9, 6.0)
    policy = DraftPolicy(8, costs)
    policy.update(8, 1)  # a poor acceptance
    assert policy.next_k(8) == 0
    assert policy.pause > 0 and policy.switch_offs == 1
    cheap = CallCosts()
    cheap.record(1, 1.0)
    cheap.record(9, 1.2)
    assert DraftPolicy(8, cheap).next_k(8) > 0
    assert DraftPolicy(8, cheap, adaptive=False).next_k(3) == 3


def test_config_accepts_names_tables_and_rejects_bad_values(tmp_path: Path, text_all: Path) -> None:
    assert GenerationConfig(speculative="ngram").speculative == SpeculativeConfig()
    assert GenerationConfig(speculative={"method": "off"}).speculative == SpeculativeConfig(method="off")
    with pytest.raises(ConfigError, match="draft_model"):
        GenerationConfig(speculative="draft")
    with pytest.raises(ConfigError, match="num_draft_tokens"):
        SpeculativeConfig(num_draft_tokens=0)
    with pytest.raises(ConfigError, match="speculative.bogus"):
        GenerationConfig(speculative={"bogus": 1})
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'program = "{text_all}"\n[generation.speculative]\nmethod = "draft"\n'
        f'draft_model = "{text_all}"\nnum_draft_tokens = 4\n'
    )
    loaded = load_config(toml).generation.speculative
    assert loaded == SpeculativeConfig(method="draft", draft_model=text_all, num_draft_tokens=4)


# -- greedy identity ------------------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [False, True])
def test_prompt_lookup_gives_the_plain_greedy_ids(
    text_all: Path, tokenizer_dir: Path, plugin_manager: Any, cpp: Any, adaptive: bool
) -> None:
    runner = TextLLMRunner(text_all, tokenizer_dir, plugin_manager=plugin_manager)
    plain = _run(runner, [TokensInput(PROMPT)], GREEDY)
    spec = _run(
        runner, [TokensInput(PROMPT)], GREEDY.replace(speculative=dataclasses.replace(FORCED, adaptive=adaptive))
    )
    info = spec.stats.extra["speculative"]
    assert spec.tokens == plain.tokens
    if not adaptive:
        # A random model rarely repeats its prompt, so drafts are proposed (and verified) but few are
        # accepted; acceptance itself is covered by the draft-equal-to-target test.
        assert info["draft_tokens_proposed"] > 0
    assert info["native_verification"] is runner.program.native


def test_draft_model_equal_to_the_target_has_every_draft_accepted(
    multimodal_all: Path, tokenizer_dir: Path, plugin_manager: Any
) -> None:
    runner = MultimodalRunner(multimodal_all, tokenizer_dir, plugin_manager=plugin_manager)
    plain = _run(runner, [TokensInput(PROMPT)], GREEDY)
    config = SpeculativeConfig(method="draft", draft_model=multimodal_all, num_draft_tokens=4, adaptive=False)
    spec = _run(runner, [TokensInput(PROMPT)], GREEDY.replace(speculative=config))
    info = spec.stats.extra["speculative"]
    assert spec.tokens == plain.tokens
    assert info["acceptance_rate"] == 1.0
    assert info["verification_calls"] <= -(-(len(spec.tokens) - 1) // 5) + 1
    assert info["draft_model_execution_s"] > 0


def test_a_different_draft_model_is_mostly_rejected_and_changes_nothing(
    text_all: Path, other_draft: Path, tokenizer_dir: Path, plugin_manager: Any
) -> None:
    runner = TextLLMRunner(text_all, tokenizer_dir, plugin_manager=plugin_manager)
    plain = _run(runner, [TokensInput(PROMPT)], GREEDY)
    config = SpeculativeConfig(method="draft", draft_model=other_draft, num_draft_tokens=4, adaptive=False)
    spec = _run(runner, [TokensInput(PROMPT)], GREEDY.replace(speculative=config))
    assert spec.tokens == plain.tokens
    assert spec.stats.extra["speculative"]["acceptance_rate"] < 0.5


def test_multimodal_history_with_embeddings_and_sessions_match_plain_decoding(
    multimodal_all: Path, tokenizer_dir: Path, plugin_manager: Any, vocab_size: int
) -> None:
    runner = MultimodalRunner(multimodal_all, tokenizer_dir, plugin_manager=plugin_manager)
    embeds = EmbeddingsInput(torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(3)))
    prompt = [TokensInput(PROMPT[:10]), embeds, TokensInput(PROMPT[10:])]
    plain = _run(runner, prompt, GREEDY)
    spec = _run(runner, prompt, GREEDY.replace(speculative=FORCED))
    assert spec.tokens == plain.tokens

    def turns(config: GenerationConfig) -> list[list[int]]:
        runner.reset()
        session = Session(runner)
        return [session.send(text, config).tokens for text in ("hello there", "and again hello there")]

    short = GREEDY.replace(max_new_tokens=16)
    assert turns(short.replace(speculative=FORCED)) == turns(short)


def test_k_row_and_one_row_logits_differ_by_less_than_the_top_gap(text_all: Path, tokenizer_dir: Path) -> None:
    """The float-rounding bound behind greedy identity (docs/speculative.md quotes the number)."""
    runner = TextLLMRunner(text_all, tokenizer_dir)
    plain = _run(runner, [TokensInput(PROMPT)], GREEDY)
    decoder = runner.decoder
    continuation = plain.tokens[:9]
    runner.reset()
    decoder.prefill_ids(PROMPT, 0, 32)
    one_row = np.stack([decoder.step_rows([t], len(PROMPT) + i)[0] for i, t in enumerate(continuation)])
    k_rows = decoder.step_rows(continuation, len(PROMPT))  # [9, V]
    diff = float(np.abs(k_rows - one_row).max())
    top2 = np.sort(one_row, axis=-1)[:, -2:]
    gap = float((top2[:, 1] - top2[:, 0]).min())
    assert diff < 1e-4
    assert gap > 10 * diff


# -- the KV cache: no undo, sliding windows, ring buffers -----------------------------------------


def _logits_after_rejected_rows(runner: TextLLMRunner, tokens: list[int], garbage: list[int]) -> np.ndarray:
    """Feed `tokens` one by one after PROMPT[:12], each call carrying `garbage` drafts (rejected rows)."""
    runner.reset()
    runner.load()
    decoder = runner.decoder
    decoder.prefill_ids(PROMPT[:12], 0, 8)
    rows = [decoder.step_rows([t, *garbage], 12 + i)[0] for i, t in enumerate(tokens)]
    return np.stack(rows)


@pytest.mark.parametrize("ring", [False, True])
def test_rejected_rows_need_no_undo_except_in_a_ring_buffer(
    make_spec: Any, program_path: Any, tokenizer_dir: Path, ring: bool
) -> None:
    spec = make_spec(kind="text", logits="all", sliding_window=8, ring_cache=ring, decoder_max_seq_len=8)
    runner = TextLLMRunner(program_path(spec), tokenizer_dir)
    tokens = list(range(40, 64))  # runs far past the 8-position window
    clean = _logits_after_rejected_rows(runner, tokens, [])
    dirty = _logits_after_rejected_rows(runner, tokens, [99, 98, 97])
    if ring:
        assert np.abs(clean - dirty).max() > 1e-2  # drafts evicted positions still inside the window
        off = _run(runner, [TokensInput(PROMPT[:12])], GREEDY.replace(speculative="ngram"))
        assert "ring buffer" in off.stats.extra["speculative"]["off"]
        assert "ring buffer" in inspect_program(program_path(spec), tokenizer=tokenizer_dir)["speculative"]
    else:
        # rows of a 4-row call round differently from a 1-row call's: the bound the test above checks
        np.testing.assert_allclose(clean, dirty, atol=1e-4)
        plain = _run(runner, [TokensInput(PROMPT[:12])], GREEDY)
        assert _run(runner, [TokensInput(PROMPT[:12])], GREEDY.replace(speculative=FORCED)).tokens == plain.tokens


def test_last_row_only_decoders_refuse_and_inspect_says_why(
    make_spec: Any, program_path: Any, tokenizer_dir: Path, plugin_manager: Any, multimodal_all: Path
) -> None:
    pte = program_path(make_spec())
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    plain = _run(runner, [TokensInput(PROMPT)], GREEDY)
    spec = _run(runner, [TokensInput(PROMPT)], GREEDY.replace(speculative="ngram"))
    assert spec.tokens == plain.tokens
    assert "last row" in spec.stats.extra["speculative"]["off"]
    assert inspect_program(pte, tokenizer=tokenizer_dir)["speculative"].startswith("off: ")
    assert inspect_program(multimodal_all, tokenizer=tokenizer_dir)["speculative"].startswith("available")


# -- controls -------------------------------------------------------------------------------------


def test_streaming_stop_strings_eos_and_stop_behave_as_without_speculation(
    text_all: Path, tokenizer_dir: Path, plugin_manager: Any
) -> None:
    runner = TextLLMRunner(text_all, tokenizer_dir, plugin_manager=plugin_manager)
    spec_config = GREEDY.replace(speculative=FORCED)
    plain = _run(runner, [TokensInput(PROMPT)], GREEDY)
    pieces: list[Any] = []
    streamed = _run(runner, [TokensInput(PROMPT)], spec_config, piece_callback=pieces.append)
    assert [p.token for p in pieces if p.token is not None] == streamed.tokens == plain.tokens

    stop_text = runner.tokenizer.decode(plain.tokens[10:13])
    for config in (GREEDY, spec_config):
        stopped = _run(runner, [TokensInput(PROMPT)], config.replace(stop=(stop_text,)))
        assert stopped.stop_reason == "stop_string"
        assert stopped.text == plain.text[: plain.text.index(stop_text)]

    def stop_after_five(piece: Any) -> None:
        if len(seen) == 5:
            runner.stop()
        seen.append(piece)

    lengths = []
    for config in (GREEDY, spec_config):
        seen: list[Any] = []
        result = _run(runner, [TokensInput(PROMPT)], config, piece_callback=stop_after_five)
        assert result.stop_reason == "stopped"
        lengths.append(len(result.tokens))
    assert lengths[0] == lengths[1]

    eos = plain.tokens[20]
    eos_runner = TextLLMRunner(text_all, tokenizer_dir, plugin_manager=plugin_manager)
    eos_runner.metadata = dataclasses.replace(eos_runner.metadata, eos_ids=frozenset({eos}))
    ended = _run(eos_runner, [TokensInput(PROMPT)], spec_config.replace(ignore_eos=False))
    assert ended.stop_reason == "eos" and ended.tokens == plain.tokens[: plain.tokens.index(eos) + 1]


def test_seeded_sampled_speculation_is_reproducible(text_all: Path, other_draft: Path, tokenizer_dir: Path) -> None:
    runner = TextLLMRunner(text_all, tokenizer_dir)
    for method in (FORCED, SpeculativeConfig(method="draft", draft_model=other_draft, adaptive=False)):
        config = GREEDY.replace(temperature=0.9, top_k=50, seed=11, speculative=method)
        first = _run(runner, [TokensInput(PROMPT)], config)
        assert _run(runner, [TokensInput(PROMPT)], config).tokens == first.tokens
        assert _run(runner, [TokensInput(PROMPT)], config.replace(seed=12)).tokens != first.tokens
        assert first.stats.extra["speculative"]["verification_calls"] > 0


def test_cli_flags_and_json_report(text_all: Path, tokenizer_dir: Path, capsys: Any) -> None:
    ids = ",".join(map(str, PROMPT))
    code = main(
        ["run", str(text_all), "--tokenizer", str(tokenizer_dir), "--tokens", ids, "--max-new-tokens", "20",
         "--speculative", "ngram", "--num-draft-tokens", "3", "--json"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["speculative"]["method"] == "ngram"
    assert out["speculative"]["decoder_calls"] >= 1
