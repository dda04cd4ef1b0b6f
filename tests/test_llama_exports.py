"""Programs made by ExecuTorch's own Llama exporter (`export_llm`) as users ship them: custom SDPA and
KV-cache-update ops, 8da4w linears with 4- and 8-bit embeddings, half precision. Greedy ids through
mmcore's TextLLMRunner (native and bindings) equal ExecuTorch's C++ TextLLMRunner, and eager PyTorch
where the export does not change the numbers. In this process the `llama::` ops run on ExecuTorch's
own kernels (loaded first, tests/conftest.py); tests/test_llm_custom_ops.py runs the same programs on
mmcore's kernels in a fresh process."""

from __future__ import annotations

import pytest

from mmcore import GenerationConfig
from mmcore.runner import TextLLMRunner
from mmcore.testing.llama_export import LlamaExportSpec, LlamaProgram, build_llama_program

PROMPT = "the quick brown fox jumps over the lazy dog"
N = 12
GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=N, num_bos=1)

VARIANTS = {
    "custom-ops-fp32": LlamaExportSpec(),
    "8da4w-emb4": LlamaExportSpec(qmode="8da4w", group_size=32, embedding_quantize="4,32"),
    "8da4w-emb8": LlamaExportSpec(qmode="8da4w", group_size=32, embedding_quantize="8,0"),
    "fp16": LlamaExportSpec(dtype="fp16"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def program(request: pytest.FixtureRequest, vocab_size: int) -> LlamaProgram:
    import dataclasses

    return build_llama_program(dataclasses.replace(VARIANTS[request.param], vocab_size=vocab_size))


@pytest.fixture(params=["native", "bindings"])
def execution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MMCORE_NATIVE", "1" if request.param == "native" else "0")
    return str(request.param)


@pytest.mark.slow
def test_export_llm_program_matches_cpp_runner(program, execution, tokenizer_dir, plugin_manager, cpp):
    runner = TextLLMRunner(program.pte, tokenizer_dir, plugin_manager=plugin_manager)
    result = runner.generate(PROMPT, GREEDY)

    assert result.tokens == cpp.generate(cpp.text(program.pte), PROMPT, N, num_bos=1)
    assert len(set(result.tokens)) > 3, "the model should not repeat one token"
    if not program.spec.quantized and program.spec.dtype == "fp32":
        prompt_ids = runner.tokenizer.encode(PROMPT, bos=1)
        assert result.tokens == program.eager_greedy(prompt_ids, N)


@pytest.mark.slow
def test_export_llm_program_uses_the_options_it_was_built_with(program):
    blob = program.pte.read_bytes()
    spec = program.spec
    assert (b"llama::custom_sdpa" in blob) == spec.use_sdpa_with_kv_cache
    assert (b"llama::update_cache" in blob) == spec.use_sdpa_with_kv_cache
    if spec.embedding_quantize is not None:
        bits = spec.embedding_quantize.split(",")[0]
        assert f"embedding_{bits}bit".encode() in blob or b"embedding_byte" in blob


@pytest.mark.slow
def test_export_llm_program_continues_a_second_turn_like_cpp(program, tokenizer_dir, plugin_manager, cpp):
    runner = TextLLMRunner(program.pte, tokenizer_dir, plugin_manager=plugin_manager)
    reference = cpp.text(program.pte)
    first = runner.generate(PROMPT, GREEDY.replace(max_new_tokens=4))
    second = runner.generate(" and then", GREEDY.replace(max_new_tokens=4, num_bos=0))

    assert first.tokens == cpp.generate(reference, PROMPT, 4, num_bos=1)
    assert second.tokens == cpp.generate(reference, " and then", 4, num_bos=0)
