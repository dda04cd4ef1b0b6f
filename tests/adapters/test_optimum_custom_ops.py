"""optimum-executorch multimodal exports as people ship them: ExecuTorch's LLM custom ops
(`use_custom_sdpa`, `use_custom_kv_cache`, Gemma 3's sliding-window ring buffer included),
quantization (`qlinear="8da4w"` with 4-bit or 8-bit `qembedding`) and half precision, for Gemma 3 and
LLaVA (and quantized SmolVLM and Voxtral). Greedy ids from a raw image or WAV file through the
adapters equal ExecuTorch's C++ runner fed the processor's tensors, and HF `generate()` where neither
quantization nor half precision changes the numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optimum.exporters.executorch")

from hf_variants import image_messages

import mmcore
from mmcore import kernels
from mmcore.program import Program
from mmcore.testing import cpp_generate, until_stop
from mmcore.testing.hf import (
    ExportOptions,
    HFModelDir,
    build_hf_model,
    build_hf_variant,
    export_hf_folder,
    hf_generate,
    hf_inputs,
    processor_segments,
)

pytestmark = [pytest.mark.hf, pytest.mark.slow]

PROMPT = "What is in it? Tell me."
#: Gemma 3's sliding window in these exports: its layers keep 32 positions in a ring buffer, and a
#: decoder call takes at most 31 (optimum caps the dynamic length at the window).
WINDOW = 32
MAX_NEW_TOKENS = 40
CUSTOM = ExportOptions(custom_sdpa=True, custom_kv_cache=True)
#: XNNPACK's 4-bit linears want a group size dividing every input width (64, 128) and a multiple of 32.
QUANTIZED_8BIT_EMBEDDINGS = ExportOptions(
    custom_sdpa=True, custom_kv_cache=True, qlinear="8da4w", qlinear_group_size=32, qembedding="8w"
)
QUANTIZED_4BIT_EMBEDDINGS = ExportOptions(
    custom_sdpa=True,
    custom_kv_cache=True,
    qlinear="8da4w",
    qlinear_group_size=32,
    qembedding="4w",
    qembedding_group_size=32,
)
HALF = ExportOptions(custom_sdpa=True, custom_kv_cache=True, dtype="float16")
BFLOAT = ExportOptions(custom_sdpa=True, custom_kv_cache=True, dtype="bfloat16")
#: name: (family, options, the ops the program must call, whether HF generate() gives the same ids)
VARIANTS: dict[str, tuple[str, ExportOptions, set[str], bool]] = {
    "gemma3-custom-ops": ("gemma3", CUSTOM, {"llama::custom_sdpa.out", "llama::update_cache_with_indices.out"}, True),
    "gemma3-8da4w-8bit-embeddings": (
        "gemma3",
        QUANTIZED_8BIT_EMBEDDINGS,
        {"llama::custom_sdpa.out", "llama::update_cache_with_indices.out", "quantized_decomposed::embedding_byte.out"},
        False,
    ),
    "gemma3-bf16-custom-ops": (
        "gemma3",
        BFLOAT,
        {"llama::custom_sdpa.out", "llama::update_cache_with_indices.out"},
        False,
    ),
    "llava-custom-ops": ("llava", CUSTOM, {"llama::custom_sdpa.out", "llama::update_cache.out"}, True),
    "llava-fp16-custom-ops": ("llava", HALF, {"llama::custom_sdpa.out", "llama::update_cache.out"}, False),
    "smolvlm-8da4w-8bit-embeddings": (
        "smolvlm",
        QUANTIZED_8BIT_EMBEDDINGS,
        {"llama::custom_sdpa.out", "llama::update_cache.out", "quantized_decomposed::embedding_byte.out"},
        False,
    ),
    "voxtral-8da4w-8bit-embeddings": (
        "voxtral",
        QUANTIZED_8BIT_EMBEDDINGS,
        {"llama::custom_sdpa.out", "llama::update_cache.out", "quantized_decomposed::embedding_byte.out"},
        False,
    ),
    "llava-8da4w-4bit-embeddings": (
        "llava",
        QUANTIZED_4BIT_EMBEDDINGS,
        {"llama::custom_sdpa.out", "llama::update_cache.out", "quantized_decomposed::embedding_4bit.out"},
        False,
    ),
}


def _windowed(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["sliding_window"] = WINDOW
    (folder / "config.json").write_text(json.dumps(config))


def _folder(family: str) -> HFModelDir:
    """The family's tiny folder; Gemma 3's with a window short enough for the prompt to wrap its ring."""
    return build_hf_variant("gemma3", f"window{WINDOW}", _windowed) if family == "gemma3" else build_hf_model(family)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, HFModelDir, Path]:
    family, options, _, _ = VARIANTS[request.param]
    model_dir = _folder(family)
    return request.param, model_dir, export_hf_folder(model_dir, "xnnpack", options=options)


def test_programs_call_the_custom_and_quantized_kernels(variant):
    name, model_dir, pte = variant
    family, options, ops, _ = VARIANTS[name]
    needs = kernels.program_needs(pte)
    assert ops <= needs.operators
    assert needs.backends == {"XnnpackBackend"}
    if options.dtype:  # the decoder takes and returns half-precision tensors
        decoder = Program(pte).method_spec("text_decoder")
        assert decoder.inputs[0] is not None and decoder.outputs[0] is not None
        assert str(decoder.inputs[0].dtype) == str(decoder.outputs[0].dtype) == options.dtype
    unquantized = [n for n, (f, o, _, _) in VARIANTS.items() if f == family and o == CUSTOM]
    if options.qlinear and unquantized:  # 4-bit linears (inside the XNNPACK delegate) shrink the program
        plain = export_hf_folder(model_dir, "xnnpack", options=CUSTOM)  # the module's other variant
        assert pte.stat().st_size < 0.6 * plain.stat().st_size


def _audio_messages(wav: Path) -> tuple[list[Any], list[Any]]:
    """A user turn with the WAV file (mmcore) and its soxr-HQ 16-kHz mono mix-down (HF, as `load_audio`)."""
    import numpy as np
    import soundfile
    import soxr

    samples, rate = soundfile.read(wav, dtype="float32")
    mono = soxr.resample(samples.mean(axis=1), rate, 16_000, quality="HQ").astype(np.float32)
    text = {"type": "text", "text": PROMPT}
    ours = [{"role": "user", "content": [{"type": "audio", "audio": str(wav)}, text]}]
    return ours, [{"role": "user", "content": [{"type": "audio", "audio": mono}, text]}]


def test_greedy_ids_equal_the_cpp_runner_and_hf_generate(variant, png_100x60, stereo_wav, capfd):
    name, model_dir, pte = variant
    family, _, _, same_as_hf = VARIANTS[name]
    ours, theirs = image_messages(png_100x60, PROMPT) if model_dir.modality == "vision" else _audio_messages(stereo_wav)
    reference = hf_inputs(family, model_dir, theirs)
    config = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=MAX_NEW_TOKENS, ignore_eos=True)

    capfd.readouterr()
    model = mmcore.open_model(pte)
    prompt = model.render(ours)
    got = model.chat(ours, config).tokens
    assert "Missing operator" not in capfd.readouterr().err
    assert prompt.ids == reference.input_ids
    cpp = cpp_generate(pte, model_dir.runner_tokenizer_dir, list(processor_segments(reference, model_dir)), len(got))
    stop = model_dir.stop_token_id
    assert until_stop(got, stop) == until_stop(cpp, stop)
    assert len(set(got)) > 3, "the tiny model should not repeat one token"
    if same_as_hf:
        expected = hf_generate(family, model_dir, reference, MAX_NEW_TOKENS)
        assert until_stop(got, stop) == until_stop(expected, stop)
    if family == "gemma3":  # the run went round the sliding-window ring buffer more than once
        assert len(prompt.ids) + MAX_NEW_TOKENS > 2 * WINDOW
        assert model.runner.decoder.max_tokens_per_call == WINDOW - 1
