"""Bad input gets a typed error and leaves the runner exactly as before; stop() works mid-stream."""

from __future__ import annotations

import threading

import pytest

from mmcore import (
    ContextOverflowError,
    EmbeddingsInput,
    GenerationConfig,
    InvalidInputError,
    RunnerStateError,
    TokenizerError,
    TokensInput,
    UnsupportedInputError,
)
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore.testing import build_tokenizer, failing_decoder_call

GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=8)


@pytest.fixture
def runner(make_spec, program_path, tokenizer_dir, plugin_manager) -> MultimodalRunner:
    return MultimodalRunner(program_path(make_spec()), tokenizer_dir, plugin_manager=plugin_manager)


@pytest.fixture
def fresh(make_spec, program_path, tokenizer_dir, plugin_manager):
    def make() -> MultimodalRunner:
        return MultimodalRunner(program_path(make_spec()), tokenizer_dir, plugin_manager=plugin_manager)

    return make


def test_empty_input_list(runner):
    with pytest.raises(RunnerStateError, match="no inputs"):
        runner.generate([], GREEDY)
    with pytest.raises(InvalidInputError, match="empty input list"):
        runner.prefill([])


def test_unknown_input_type_names_the_package_to_install(runner):
    class Photo:
        pass

    with pytest.raises(UnsupportedInputError, match="Photo"):
        runner.generate([Photo()], GREEDY)
    pil = pytest.importorskip("PIL.Image")
    with pytest.raises(UnsupportedInputError, match="pip install mmcore-image"):
        runner.generate([pil.new("RGB", (4, 4))], GREEDY)
    assert runner.pos == 0


def test_text_without_the_text_plugin(make_spec, program_path, tokenizer_dir, plugin_manager):
    import mmcore_text

    from mmcore.plugins import PluginManager

    tokenizer = mmcore_text.load(tokenizer_dir)
    runner = MultimodalRunner(program_path(make_spec()), tokenizer, plugin_manager=PluginManager(entry_points=False))
    with pytest.raises(UnsupportedInputError, match="pip install mmcore-text"):
        runner.generate(["hello"], GREEDY)
    assert runner.generate([TokensInput([0, 5, 6])], GREEDY).tokens  # token ids need no plugin


def test_empty_segments_and_out_of_range_ids(runner, vocab_size):
    with pytest.raises(InvalidInputError, match="input 1 .*no tokens"):
        runner.generate(["hi", ""], GREEDY)
    with pytest.raises(InvalidInputError, match="outside the model's vocabulary"):
        runner.generate([TokensInput([5, vocab_size])], GREEDY)
    import torch

    with pytest.raises(InvalidInputError, match="width 3"):
        runner.generate([EmbeddingsInput(torch.zeros(1, 2, 3))], GREEDY)
    with pytest.raises(InvalidInputError, match="0 rows"):
        runner.generate([EmbeddingsInput(torch.zeros(1, 0, 64))], GREEDY)
    assert runner.pos == 0


def test_prompt_beyond_the_context_is_rejected_before_any_compute(runner):
    calls = []
    runner.load()
    original = runner.decoder.decode
    runner.decoder.decode = lambda *a: calls.append(a) or original(*a)  # type: ignore[method-assign]
    with pytest.raises(ContextOverflowError, match="context holds 128"):
        runner.generate([TokensInput([5] * 128)], GREEDY)
    assert calls == [] and runner.pos == 0
    runner.generate([TokensInput([5] * 100)], GREEDY)
    with pytest.raises(ContextOverflowError, match="reset"):
        runner.generate([TokensInput([5] * 30)], GREEDY)  # 100 + 7 + 30 > 128
    assert runner.pos == 107


def test_text_runner_context_overflow(make_spec, program_path, tokenizer_dir, plugin_manager):
    runner = TextLLMRunner(program_path(make_spec(kind="text")), tokenizer_dir, plugin_manager=plugin_manager)
    with pytest.raises(ContextOverflowError):
        runner.generate("word " * 200, GREEDY)
    assert runner.pos == 0


def test_tokenizer_larger_than_the_logits(make_spec, program_path, plugin_manager, tmp_path):
    big_tokenizer = build_tokenizer(cache_dir=tmp_path, vocab_size=1024)
    with pytest.raises(TokenizerError, match="logits cover only"):
        MultimodalRunner(program_path(make_spec()), big_tokenizer, plugin_manager=plugin_manager).load()


def test_missing_tokenizer_path(make_spec, program_path, plugin_manager, tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        MultimodalRunner(program_path(make_spec()), tmp_path / "nope", plugin_manager=plugin_manager)


@pytest.mark.parametrize("failing_call", [1, 3, 6])
def test_a_failed_call_rolls_back_as_if_it_never_happened(failing_call, fresh):
    """Inject a failure into the n-th decoder call of turn 2; turn 2 retried must equal a clean run."""
    clean = fresh()
    clean.generate(["the quick brown fox"], GREEDY)
    expected = clean.generate(["jumps over"], GREEDY).tokens

    runner = fresh()
    runner.generate(["the quick brown fox"], GREEDY)
    pos = runner.pos
    with failing_decoder_call(runner, failing_call), pytest.raises(RuntimeError, match="injected"):
        runner.generate(["jumps over"], GREEDY)
    assert runner.pos == pos
    assert runner.generate(["jumps over"], GREEDY).tokens == expected


def test_failure_inside_a_plugin_rolls_back(fresh):
    runner = fresh()
    runner.generate(["the quick brown fox"], GREEDY)
    pos = runner.pos

    def broken_callback(piece: str) -> None:
        raise ValueError("callback failed")

    with pytest.raises(ValueError, match="callback failed"):
        runner.generate(["jumps"], GREEDY, token_callback=broken_callback)
    assert runner.pos == pos


def test_stop_from_another_thread_ends_within_one_step(fresh):
    runner = fresh()
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=100, ignore_eos=True)
    seen: list[str] = []
    stopped_at: list[int] = []

    def on_piece(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 5:
            stopper = threading.Thread(target=runner.stop)
            stopper.start()
            stopper.join()
            stopped_at.append(len(seen))

    result = runner.generate(["the quick brown fox"], config, token_callback=on_piece)
    assert result.stop_reason == "stopped"
    assert len(result.tokens) <= stopped_at[0] + 1 + 2  # pieces may hold a token back; one more step at most
    assert len(result.tokens) < 20
    # The runner stays usable and continues from where it stopped (last token not yet in the cache).
    assert runner.pos == len(runner.tokenizer.encode("the quick brown fox")) + len(result.tokens) - 1
    assert runner.generate(["jumps"], GREEDY).tokens


def test_stop_before_generate_does_not_cancel_the_next_call(fresh):
    runner = fresh()
    runner.stop()
    assert len(runner.generate(["the quick"], GREEDY.replace(ignore_eos=True)).tokens) == 8


def test_prefill_then_generate_from_it(fresh):
    a, b = fresh(), fresh()
    expected = a.generate(["the quick brown fox"], GREEDY).tokens
    b.prefill(["the quick brown fox"])
    assert b.generate([], GREEDY).tokens == expected


def test_reset_starts_over(fresh):
    runner = fresh()
    first = runner.generate(["the quick brown fox"], GREEDY).tokens
    runner.generate(["jumps over"], GREEDY)
    runner.reset()
    assert runner.pos == 0
    assert runner.generate(["the quick brown fox"], GREEDY).tokens == first


def test_stop_strings_and_echo(fresh):
    runner = fresh()
    plain = runner.generate(["the quick brown fox"], GREEDY.replace(max_new_tokens=20))
    assert len(plain.text) > 4
    stop = plain.text[2:5]
    runner.reset()
    pieces: list[str] = []
    cut = runner.generate(
        ["the quick brown fox"],
        GREEDY.replace(max_new_tokens=20, stop=(stop,), echo=True),
        token_callback=pieces.append,
    )
    assert cut.stop_reason == "stop_string"
    assert cut.text == plain.text[: plain.text.index(stop)]
    assert pieces[0] == "the quick brown fox"  # echo comes first
    assert "".join(pieces[1:]) == cut.text
