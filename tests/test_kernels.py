"""Kernel libraries: what a program needs is read from its flatbuffer, and the libraries that provide
it are loaded before the first method load, quietly and without the exporter. Runs that must start
from an empty kernel registry happen in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcore import InvalidProgramError, MissingKernelError, kernels
from mmcore.testing.llama_export import LlamaExportSpec, build_llama_program

PROMPT = "the quick brown fox jumps over the lazy dog"

# Builds nothing: loads a program in a fresh process, generates greedily and reports what it saw.
RUN = """
import json, sys
from mmcore import GenerationConfig, MissingKernelError, kernels
from mmcore.runner import TextLLMRunner
if sys.argv[3] == "no-torch":
    kernels.torch_installed = lambda: False
try:
    runner = TextLLMRunner(sys.argv[1], sys.argv[2])
    tokens = runner.generate(sys.argv[4], GenerationConfig(temperature=0.0, max_new_tokens=8, echo=False)).tokens
    error = None
except MissingKernelError as exc:
    tokens, error = [], str(exc)
print(json.dumps({
    "tokens": tokens,
    "error": error,
    "exporter_imported": any(m.startswith(("executorch.exir", "executorch.extension.llm")) for m in sys.modules),
}))
"""


def run_fresh(pte: Path, tokenizer_dir: Path, torch_mode: str = "torch", **env: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(pte), str(tokenizer_dir), torch_mode, PROMPT],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def custom_op_program(vocab_size: int) -> Path:
    return build_llama_program(LlamaExportSpec(vocab_size=vocab_size)).pte


@pytest.fixture(scope="module")
def quantized_program(vocab_size: int) -> Path:
    """8da4w linears and 8-bit embeddings with the plain KV cache: quantized kernels, no custom ops."""
    spec = LlamaExportSpec(
        vocab_size=vocab_size, qmode="8da4w", group_size=32, embedding_quantize="8,0", use_sdpa_with_kv_cache=False
    )
    return build_llama_program(spec).pte


def test_needs_are_read_from_the_flatbuffer(make_spec, program_path):
    portable = kernels.program_needs(program_path(make_spec(kind="text")))
    assert "aten::mm.out" in portable.operators or "aten::linear.out" in portable.operators
    assert all("::" in op for op in portable.operators)
    assert not any(op.startswith(("llama::", "quantized_decomposed::")) for op in portable.operators)
    assert portable.backends == frozenset()

    lowered = kernels.program_needs(program_path(make_spec(backend="xnnpack")))
    assert lowered.backends == {"XnnpackBackend"}


def test_needs_of_a_file_that_is_no_program_raise_a_typed_error(tmp_path):
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"\xff\xff\xff\x7fET12" + b"\0" * 8)
    with pytest.raises(InvalidProgramError, match="not a readable ExecuTorch program"):
        kernels.program_needs(bad)


@pytest.mark.slow
def test_custom_op_program_needs_the_llm_custom_ops(custom_op_program):
    needs = kernels.program_needs(custom_op_program)
    assert {"llama::custom_sdpa.out", "llama::update_cache.out"} <= needs.operators
    assert needs.backends == {"XnnpackBackend"}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["custom_op_program", "quantized_program"])
def test_programs_with_extra_kernels_run_quietly_without_the_exporter(which, request, tokenizer_dir):
    pte = request.getfixturevalue(which)
    report, stderr = run_fresh(pte, tokenizer_dir)
    assert report["error"] is None
    assert len(report["tokens"]) == 8
    assert "Missing operator" not in stderr
    assert "rror" not in stderr, stderr
    assert not report["exporter_imported"], "kernels must load without executorch.exir or custom_ops.py"


@pytest.mark.slow
def test_quantized_program_needs_only_torch_free_kernels(quantized_program, tokenizer_dir):
    needs = kernels.program_needs(quantized_program)
    assert any(op.startswith("quantized_decomposed::") for op in needs.operators)
    assert not any(op.startswith("llama::") for op in needs.operators)
    with_torch, _ = run_fresh(quantized_program, tokenizer_dir)
    without, stderr = run_fresh(quantized_program, tokenizer_dir, "no-torch")
    assert without["tokens"] == with_torch["tokens"]
    assert "Missing operator" not in stderr


@pytest.mark.slow
def test_custom_op_program_runs_without_torch_on_mmcores_kernels(custom_op_program, tokenizer_dir):
    with_executorchs, _ = run_fresh(custom_op_program, tokenizer_dir, MMCORE_LLM_KERNELS="executorch")
    without, stderr = run_fresh(custom_op_program, tokenizer_dir, "no-torch")
    assert without["error"] is None
    assert without["tokens"] == with_executorchs["tokens"] and len(without["tokens"]) == 8
    assert "Missing operator" not in stderr


@pytest.mark.slow
def test_custom_ops_without_torch_and_own_kernels_raise_missing_kernel_error(custom_op_program, tokenizer_dir):
    report, stderr = run_fresh(custom_op_program, tokenizer_dir, "no-torch", MMCORE_LLM_KERNELS="executorch")
    assert report["tokens"] == []
    assert "llama::custom_sdpa.out" in report["error"]
    assert "pip install 'mmcore[torch]'" in report["error"]
    assert "Missing operator" not in stderr


def test_missing_kernel_error_is_a_program_error():
    from mmcore import ProgramError

    assert issubclass(MissingKernelError, ProgramError)


@pytest.mark.slow
def test_inspect_names_the_kernel_libraries(custom_op_program, tokenizer_dir, capsys):
    from mmcore.cli import main

    assert main(["inspect", str(custom_op_program), "--tokenizer", str(tokenizer_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "mmcore's LLM custom-op kernels" in report["kernels"]
    assert "XnnpackBackend" in report["kernels"]
    assert report["execution"].startswith("native (mmcore._native, built for executorch 1.5.1)")
