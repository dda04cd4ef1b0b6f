"""The program layer: method specs, metadata with ExecuTorch's defaults, and clean errors for bad files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mmcore import InvalidProgramError, LLMMetadata, MissingMetadataError, MissingMethodError, Program
from mmcore.runner import MultimodalRunner
from mmcore.testing import VisionEncoderSpec


def test_method_specs_and_metadata(make_spec, program_path, vocab_size):
    spec = make_spec(vision=VisionEncoderSpec(dtype="uint8", rank=3), eos_ids=(1, 7))
    program = Program(program_path(spec))
    assert {"token_embedding", "text_decoder", "vision_encoder", "get_max_seq_len"} <= program.method_names
    image = program.method_spec("vision_encoder").input(0)
    assert (image.dtype, image.shape) == (np.uint8, (3, 32, 32))  # numpy dtypes
    decoder = program.method_spec("text_decoder")
    assert decoder.input(0).shape == (1, 64, 64)  # dynamic T shows its upper bound
    assert decoder.outputs[0].shape == (1, vocab_size)

    meta = LLMMetadata.from_program(program)
    assert (meta.max_seq_len, meta.max_context_len, meta.use_kv_cache, meta.enable_dynamic_shape) == (
        64,
        128,
        True,
        True,
    )
    assert meta.eos_ids == {1, 7}
    assert meta.vocab_size == vocab_size


def test_metadata_defaults_when_optional_methods_are_absent(make_spec, program_path):
    spec = make_spec(omit_metadata=("get_max_context_len", "get_eos_ids", "use_kv_cache", "enable_dynamic_shape"))
    meta = LLMMetadata.from_program(Program(program_path(spec)))
    assert meta.max_context_len == meta.max_seq_len == 64  # context defaults to max_seq_len
    assert meta.use_kv_cache is True and meta.enable_dynamic_shape is False
    assert meta.eos_ids == frozenset()


def test_missing_max_seq_len_is_a_typed_error(make_spec, program_path, tokenizer_dir, plugin_manager):
    pte = program_path(make_spec(omit_metadata=("get_max_seq_len",)))
    with pytest.raises(MissingMetadataError, match="get_max_seq_len.*constant_methods"):
        MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager).load()


@pytest.mark.parametrize("missing", ["token_embedding", "text_decoder"])
def test_missing_required_method_is_a_typed_error(missing, make_spec, program_path, tokenizer_dir, plugin_manager):
    pte = program_path(make_spec(omit_methods=(missing,)))
    with pytest.raises(MissingMethodError, match=missing):
        MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)


def test_not_a_pte_file(tmp_path):
    bogus = tmp_path / "model.pte"
    bogus.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(InvalidProgramError, match="not an ExecuTorch program"):
        Program(bogus)
    text = tmp_path / "notes.pte"
    text.write_text("hello")
    with pytest.raises(InvalidProgramError, match="not an ExecuTorch program"):
        Program(text)
    with pytest.raises(InvalidProgramError, match="does not exist"):
        Program(tmp_path / "absent.pte")
    with pytest.raises(InvalidProgramError, match="not a file"):
        Program(tmp_path)


@pytest.mark.parametrize("keep", [0.25, 0.6, 0.99])
def test_truncated_pte_is_rejected_before_the_runtime_sees_it(keep, make_spec, program_path, tmp_path):
    data = program_path(make_spec()).read_bytes()
    cut = tmp_path / "cut.pte"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InvalidProgramError, match="truncated"):
        Program(cut)


def test_bad_files_never_crash_the_process(tmp_path, make_spec, program_path):
    """The runtime aborts on some malformed files; the CLI must exit 1 with a message instead."""
    data = program_path(make_spec()).read_bytes()
    cases = {"random.pte": bytes(reversed(data)), "cut.pte": data[: len(data) // 2]}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        proc = subprocess.run(
            [sys.executable, "-m", "mmcore", "run", str(path), "--tokenizer", str(tmp_path), "--tokens", "1,2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("mmcore: error:")


_CUSTOM_SDPA_EXPORT = """
import sys, torch
import executorch.extension.llm.custom_ops.custom_ops  # registers llama::custom_sdpa for export
from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

class Attend(torch.nn.Module):
    def forward(self, q):
        return torch.ops.llama.custom_sdpa(q, q, q, 0, None, 0.0, True)

ep = torch.export.export(Attend(), (torch.randn(1, 4, 2, 8),))
edge = to_edge_transform_and_lower(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False))
open(sys.argv[1], "wb").write(edge.to_executorch().buffer)
"""

_CUSTOM_SDPA_RUN = """
import sys, numpy as np
from mmcore import Program
q = np.random.default_rng(0).standard_normal((1, 4, 2, 8), dtype=np.float32)
out = Program(sys.argv[1]).method("forward").execute([q])[0]  # outputs are numpy arrays
assert out.shape == (1, 4, 2, 8) and np.isfinite(out).all()
"""


def test_programs_with_llm_custom_ops_load_without_user_imports(tmp_path):
    pte = tmp_path / "custom_sdpa.pte"
    export = subprocess.run([sys.executable, "-c", _CUSTOM_SDPA_EXPORT, str(pte)], capture_output=True, timeout=300)
    assert export.returncode == 0, export.stderr.decode()[-2000:]
    run = subprocess.run([sys.executable, "-c", _CUSTOM_SDPA_RUN, str(pte)], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()[-2000:]


@pytest.mark.parametrize("native", [True, False])
def test_program_with_external_weights(native, make_spec, program_path, tokenizer_dir, plugin_manager):
    from mmcore import GenerationConfig
    from mmcore.testing import cached_data_path, eager_model

    spec = make_spec(external_weights=True)
    pte = program_path(spec)
    weights = cached_data_path(spec)
    assert weights is not None and weights.stat().st_size > pte.stat().st_size  # the weights live outside
    runner = MultimodalRunner(
        Program(pte, data_path=weights, native=native), tokenizer_dir, plugin_manager=plugin_manager
    )
    result = runner.generate(["the quick brown fox"], GenerationConfig(echo=False, temperature=0.0, max_new_tokens=8))
    prompt_ids = runner.tokenizer.encode("the quick brown fox")
    assert result.tokens == eager_model(spec).greedy_generate([("tokens", prompt_ids)], 8)

    without = MultimodalRunner(Program(pte, native=native), tokenizer_dir, plugin_manager=plugin_manager)
    with pytest.raises(InvalidProgramError, match="pass it as data_path"):
        without.generate(["the quick brown fox"], GenerationConfig(echo=False, temperature=0.0, max_new_tokens=2))


def test_cli_runs_a_program_with_external_weights(make_spec, program_path, tokenizer_dir, capsys):
    import json

    from mmcore.cli import main
    from mmcore.testing import cached_data_path

    spec = make_spec(kind="text", external_weights=True)
    pte = program_path(spec)
    args = ["run", str(pte), "--tokenizer", str(tokenizer_dir), "--text", "the quick", "--max-new-tokens", "4"]
    assert main([*args, "--data-path", str(cached_data_path(spec)), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tokens"]) == 4
    assert main(args) == 1
    assert "data_path" in capsys.readouterr().err


@pytest.mark.parametrize("native", [True, False])
def test_execute_takes_numpy_arrays_and_torch_tensors_alike(native, make_spec, program_path):
    import numpy as np

    from mmcore.arrays import BFLOAT16, as_array

    spec = make_spec(vision=VisionEncoderSpec(dtype="bfloat16", rank=4))
    program = Program(program_path(spec), native=native)
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, 32, 32), dtype=np.float32).astype(BFLOAT16)  # [1, 3, H, W]
    from_numpy = program.method("vision_encoder").execute([image])[0]
    from_torch = program.method("vision_encoder").execute(
        [torch.from_numpy(image.view(np.int16)).view(torch.bfloat16)]
    )[0]
    assert as_array(from_numpy).dtype == as_array(from_torch).dtype
    np.testing.assert_array_equal(as_array(from_numpy).astype(np.float32), as_array(from_torch).astype(np.float32))

    tokens = np.array([[3, 5, 9]], dtype=np.int64)  # [1, T]
    embedded = as_array(program.method("token_embedding").execute([tokens])[0])
    reference = as_array(program.method("token_embedding").execute([torch.tensor([[3, 5, 9]])])[0])
    np.testing.assert_array_equal(embedded, reference)
    # a strided (non-contiguous) array is made contiguous before the runtime reads it
    strided = np.array([[3, 0, 5, 0, 9]], dtype=np.int64)[:, ::2]
    np.testing.assert_array_equal(as_array(program.method("token_embedding").execute([strided])[0]), reference)
