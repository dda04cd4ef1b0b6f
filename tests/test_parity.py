"""Greedy token ids equal ExecuTorch's C++ runners and eager PyTorch on the same programs, whether
mmcore runs the methods natively or through ExecuTorch's Python bindings."""

from __future__ import annotations

import pytest
import torch

from mmcore import GenerationConfig, TokensInput
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore.testing import VisionEncoderSpec, eager_model

GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=12)
PROMPT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(autouse=True, params=["native", "bindings"])
def execution(request, monkeypatch):
    """Every parity test runs with mmcore's native extension and with ExecuTorch's Python bindings."""
    monkeypatch.setenv("MMCORE_NATIVE", "1" if request.param == "native" else "0")
    return request.param


@pytest.mark.parametrize("backend", ["portable", "xnnpack"])
def test_text_program_matches_cpp_and_eager(backend, make_spec, program_path, tokenizer_dir, plugin_manager, cpp):
    spec = make_spec(kind="text", backend=backend)
    pte = program_path(spec)
    runner = TextLLMRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    result = runner.generate(PROMPT, GREEDY.replace(num_bos=1))
    prompt_ids = runner.tokenizer.encode(PROMPT, bos=1)

    assert result.tokens == cpp.generate(cpp.text(pte), PROMPT, 12, num_bos=1)
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", prompt_ids)], 12)
    assert len(set(result.tokens)) > 3, "the model should not repeat one token"


@pytest.mark.parametrize("backend", ["portable", "xnnpack"])
def test_multimodal_text_and_tokens_match_cpp_and_eager(
    backend, make_spec, program_path, tokenizer_dir, plugin_manager, cpp
):
    spec = make_spec(backend=backend)
    pte = program_path(spec)
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    tokens = [0, 40, 41, 42]
    result = runner.generate([TokensInput(tokens), PROMPT], GREEDY)
    text_ids = runner.tokenizer.encode(PROMPT)

    reference = cpp.generate(cpp.multimodal(pte), cpp.inputs([("tokens", tokens), ("text", PROMPT)]), 12)
    assert result.tokens == reference
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", tokens), ("tokens", text_ids)], 12)


def test_text_runner_chunks_long_prompts_like_cpp(make_spec, program_path, tokenizer_dir, plugin_manager, cpp):
    spec = make_spec(kind="text", decoder_max_seq_len=8)
    pte = program_path(spec)
    runner = TextLLMRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    prompt = " ".join([PROMPT] * 2)
    assert len(runner.tokenizer.encode(prompt)) > 16  # at least three chunks

    result = runner.generate(prompt, GREEDY)
    assert result.tokens == cpp.generate(cpp.text(pte), prompt, 12)
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", runner.tokenizer.encode(prompt))], 12)


def test_multimodal_runner_chunks_segments_longer_than_the_decoder_accepts(
    make_spec, program_path, tokenizer_dir, plugin_manager
):
    # ExecuTorch's C++ MultimodalRunner cannot do this (no chunking): compare with eager only.
    spec = make_spec(decoder_max_seq_len=8)
    runner = MultimodalRunner(program_path(spec), tokenizer_dir, plugin_manager=plugin_manager)
    ids = runner_ids = list(range(30, 60))
    result = runner.generate([TokensInput(runner_ids)], GREEDY)
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", ids)], 12)


@pytest.mark.parametrize("kind", ["text", "multimodal"])
def test_static_shape_programs_prefill_token_by_token(
    kind, make_spec, program_path, tokenizer_dir, plugin_manager, cpp
):
    spec = make_spec(kind=kind, dynamic_shape=False)
    pte = program_path(spec)
    runner_cls = TextLLMRunner if kind == "text" else MultimodalRunner
    runner = runner_cls(pte, tokenizer_dir, plugin_manager=plugin_manager)
    result = runner.generate(PROMPT, GREEDY)
    ids = runner.tokenizer.encode(PROMPT)
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", ids)], 12)
    if kind == "text":  # the C++ multimodal runner has no sequential fallback
        assert result.tokens == cpp.generate(cpp.text(pte), PROMPT, 12)


def test_cache_position_form_and_full_logits(make_spec, program_path, tokenizer_dir, plugin_manager, cpp):
    spec = make_spec(position_form="cache_position", logits="all")
    pte = program_path(spec)
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    assert runner.generate([PROMPT], GREEDY).tokens == cpp.generate(
        cpp.multimodal(pte), cpp.inputs([("text", PROMPT)]), 12
    )


def test_text_program_without_kv_cache(make_spec, program_path, tokenizer_dir, plugin_manager, cpp):
    spec = make_spec(kind="text", use_kv_cache=False)
    pte = program_path(spec)
    runner = TextLLMRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    result = runner.generate(PROMPT, GREEDY)
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", runner.tokenizer.encode(PROMPT))], 12)


@pytest.mark.parametrize("kind", ["text", "multimodal"])
def test_consecutive_generate_calls_continue_the_conversation_like_cpp(
    kind, make_spec, program_path, tokenizer_dir, plugin_manager, cpp
):
    spec = make_spec(kind=kind)
    pte = program_path(spec)
    if kind == "text":
        ours = TextLLMRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
        reference, turns = cpp.text(pte), ["the quick brown fox", "jumps over"]
        cpp_turns = turns
    else:
        ours = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
        reference, turns = cpp.multimodal(pte), [["the quick brown fox"], ["jumps over"]]
        cpp_turns = [cpp.inputs([("text", t[0])]) for t in turns]
    for turn, cpp_turn in zip(turns, cpp_turns, strict=True):
        assert ours.generate(turn, GREEDY).tokens == cpp.generate(reference, cpp_turn, 12)
    # ExecuTorch semantics: the last emitted token of a turn is not in the cache.
    first_ids = ours.tokenizer.encode("the quick brown fox")
    assert ours.pos == len(first_ids) + 11 + len(ours.tokenizer.encode("jumps over")) + 11


def test_large_encoder_activations_do_not_corrupt_the_kv_cache(
    make_spec, program_path, tokenizer_dir, plugin_manager, cpp, sample_image_tensor
):
    """ExecuTorch's Python runtime shares planned memory between a program's methods; an encoder run
    between two decoder calls must not overwrite the cache (each method has its own arena here)."""
    from mmcore import EmbeddingsInput, PrefillContext

    class TensorImage:
        def __init__(self, pixels: torch.Tensor) -> None:
            self.pixels = pixels

    class TensorImageHandler:
        name = "test-image"
        input_types = (TensorImage,)

        def preprocess(self, item, ctx: PrefillContext):
            return item.pixels.unsqueeze(0)  # [1, 3, H, W]

        def prefill(self, pixels, ctx: PrefillContext):
            return EmbeddingsInput(ctx.program.method("vision_encoder").execute([pixels])[0])

    class Plugin:
        from mmcore import hookimpl

        @hookimpl
        def mmcore_register_modalities(self, registry):
            registry.add(TensorImageHandler())

    plugin_manager.register(Plugin(), name="test-image")
    spec = make_spec(vision=VisionEncoderSpec(fat_channels=512))
    pte = program_path(spec)
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    image = sample_image_tensor
    result = runner.generate(["the quick brown fox", TensorImage(image), "jumps over"], GREEDY)

    encode = runner.tokenizer.encode
    eager = eager_model(spec).greedy_generate(
        [("tokens", encode("the quick brown fox")), ("image", image.unsqueeze(0)), ("tokens", encode("jumps over"))], 12
    )
    reference = cpp.generate(
        cpp.multimodal(pte), cpp.inputs([("text", "the quick brown fox"), ("image", image), ("text", "jumps over")]), 12
    )
    assert result.tokens == eager == reference


def test_text_program_with_cache_positions_and_full_logits(make_spec, program_path, tokenizer_dir, plugin_manager, cpp):
    spec = make_spec(kind="text", position_form="cache_position", logits="all")
    pte = program_path(spec)
    runner = TextLLMRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    first = runner.generate(PROMPT, GREEDY)
    reference = cpp.text(pte)
    assert first.tokens == cpp.generate(reference, PROMPT, 12)
    # prefill() then generate("") continues from the prefilled state, as a second turn does
    runner.reset()
    runner.prefill(PROMPT)
    assert runner.generate("", GREEDY).tokens == first.tokens
