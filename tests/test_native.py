"""mmcore's native extension: methods through the wheel's runtime and greedy decoding below Python.

Every result must equal the path through ExecuTorch's Python bindings (`Program(native=False)`).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from mmcore import GenerationConfig, Program, TokensInput
from mmcore.program import BindingMethod, NativeMethod, native_extension
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore.testing import VisionEncoderSpec

PROMPT = "the quick brown fox jumps over the lazy dog"


def test_native_extension_is_built():
    assert native_extension() is not None, "mmcore._native was not built: install with scripts/setup.sh"


def test_native_switch(make_spec, program_path, monkeypatch):
    pte = program_path(make_spec())
    assert isinstance(Program(pte).method("text_decoder"), NativeMethod)
    assert isinstance(Program(pte, native=False).method("text_decoder"), BindingMethod)
    monkeypatch.setenv("MMCORE_NATIVE", "0")
    assert isinstance(Program(pte).method("text_decoder"), BindingMethod)
    with pytest.raises(Exception, match="native extension is not built"):
        Program(pte, native=True)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_method_outputs_equal_the_bindings(dtype, make_spec, program_path):
    pte = program_path(make_spec(vision=VisionEncoderSpec(dtype=dtype)))
    pixels = torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8)
    pixels = pixels if dtype == "uint8" else pixels.float() / 255
    tokens = torch.tensor([[5, 9, 11, 2]])

    def run(program: Program) -> list[np.ndarray]:
        # torch tensors in (accepted at the edge), numpy arrays out; outputs fed back as they come
        rows = program.method("vision_encoder").execute([pixels])[0]  # [1, N, D]
        embedded = program.method("token_embedding").execute([tokens])[0]  # [1, 4, D]
        decoder = program.method("text_decoder")
        first = decoder.execute([rows, np.array([0])])[0]
        return [rows, embedded, first, decoder.execute([embedded, np.array([rows.shape[1]])])[0]]

    native, binding = run(Program(pte)), run(Program(pte, native=False))
    assert all(isinstance(a, np.ndarray) and isinstance(b, np.ndarray) for a, b in zip(native, binding, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(native, binding, strict=True))


def test_aliased_outputs_are_valid_until_the_next_call(make_spec, program_path):
    method = Program(program_path(make_spec())).method("token_embedding")
    three, four = np.array([[3]]), np.array([[4]])
    first = method.execute([three], clone_outputs=False)[0].copy()
    kept = method.execute([three])[0]
    aliased = method.execute([three], clone_outputs=False)[0]
    assert np.array_equal(first, kept) and np.array_equal(first, aliased)
    method.execute([four], clone_outputs=False)
    assert np.array_equal(kept, first), "a cloned output must not change with later calls"
    assert not np.array_equal(aliased, first), "an aliased output shows the method's next result"


CONFIGS = {
    "greedy": GenerationConfig(echo=False, temperature=0.0, max_new_tokens=20),
    "greedy, ignore_eos": GenerationConfig(echo=False, temperature=0.0, max_new_tokens=20, ignore_eos=True),
    "greedy, logprobs": GenerationConfig(echo=False, temperature=0.0, max_new_tokens=20, logprobs=True),
    "greedy, penalty": GenerationConfig(echo=False, temperature=0.0, max_new_tokens=20, repetition_penalty=1.3),
    "sampled": GenerationConfig(echo=False, temperature=0.8, top_k=20, seed=3, max_new_tokens=20),
    "stop string": GenerationConfig(echo=False, temperature=0.0, max_new_tokens=20, stop=["o"]),
}


@pytest.mark.parametrize("kind", ["text", "multimodal"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_generation_equals_the_bindings(kind, config, make_spec, program_path, tokenizer_dir, plugin_manager):
    pte = program_path(make_spec(kind=kind))
    runner_type = TextLLMRunner if kind == "text" else MultimodalRunner
    results = []
    for native in (True, False):
        runner = runner_type(Program(pte, native=native), tokenizer_dir, plugin_manager=plugin_manager)
        prompt = PROMPT if kind == "text" else [PROMPT]
        first = runner.generate(prompt, CONFIGS[config])
        second = runner.generate(prompt, CONFIGS[config])  # continues at the next position
        results.append((first.tokens, first.text, first.stop_reason, second.tokens, first.logprobs, runner.pos))
    assert results[0] == results[1]


def test_native_decoding_reports_execution_time(make_spec, program_path, tokenizer_dir, plugin_manager):
    runner = MultimodalRunner(program_path(make_spec()), tokenizer_dir, plugin_manager=plugin_manager)
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=30, ignore_eos=True)
    prefill_only = MultimodalRunner(program_path(make_spec()), tokenizer_dir, plugin_manager=plugin_manager)
    prefill_only.generate([TokensInput([0, 5, 6])], config.replace(max_new_tokens=1))
    result = runner.generate([TokensInput([0, 5, 6])], config)
    assert len(result.tokens) == 30
    assert result.stats.model_execution_time_s > prefill_only.stats.model_execution_time_s > 0


def test_overlapping_calls_are_refused(make_spec, program_path, tokenizer_dir, plugin_manager):
    program = Program(program_path(make_spec()))
    runner = MultimodalRunner(program, tokenizer_dir, plugin_manager=plugin_manager)
    errors: list[Exception] = []

    def reenter(_: str) -> None:
        try:
            program.method("token_embedding").execute([torch.tensor([[3]])])
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    result = runner.generate([PROMPT], GenerationConfig(echo=False, temperature=0.0, max_new_tokens=4), reenter)
    assert len(result.tokens) >= 1
    assert errors and all("must not overlap" in str(e) for e in errors)


def test_stop_from_another_thread_ends_native_decoding(make_spec, program_path, tokenizer_dir, plugin_manager):
    runner = MultimodalRunner(program_path(make_spec()), tokenizer_dir, plugin_manager=plugin_manager)
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=100, ignore_eos=True)
    started = threading.Event()
    stopped: list[int] = []

    def on_text(_: str) -> None:
        started.set()
        if stopped and len(runner_tokens) > stopped[0] + 1:
            raise AssertionError("decoding went on for more than one step after stop()")

    runner_tokens: list[int] = []

    def on_piece(piece) -> None:
        if piece.token is not None:
            runner_tokens.append(piece.token)

    def stopper() -> None:
        started.wait(5)
        stopped.append(len(runner_tokens))
        runner.stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    result = runner.generate([PROMPT], config, token_callback=on_text, piece_callback=on_piece)
    thread.join()
    assert result.stop_reason == "stopped"
    assert len(result.tokens) < 100


def test_non_contiguous_and_wrong_inputs(make_spec, program_path):
    method = Program(program_path(make_spec())).method("token_embedding")
    ids = torch.tensor([[3, 4], [5, 6]])
    assert np.array_equal(method.execute([ids.t()[:1]])[0], method.execute([torch.tensor([[3, 5]])])[0])
    assert np.array_equal(method.execute([ids.numpy().T[:1]])[0], method.execute([np.array([[3, 5]])])[0])
    from mmcore import ExecutionError

    with pytest.raises(ExecutionError, match="token_embedding"):
        method.execute([torch.tensor([[3.0, 5.0]])])  # float ids
    with pytest.raises(ExecutionError, match="token_embedding"):
        method.execute([torch.zeros(1, 10_000, dtype=torch.long)])  # beyond the dynamic bound
