"""mmcore's own kernels for ExecuTorch's LLM custom ops (`llama::custom_sdpa.out`,
`llama::update_cache.out`, `llama::update_cache_with_indices.out`, `llama::sdpa_with_kv_cache.out`;
mmcore/_llm_ops.cpp), against ExecuTorch's.

The test process loads ExecuTorch's custom-ops library first (tests/conftest.py), so in-process
references run ExecuTorch's kernels; mmcore runs in a subprocess of this environment, where nothing
loads that library and mmcore registers its own kernels. Whole `export_llm` programs give the C++
runner binding's greedy ids; small programs calling one op on odd shapes (grouped-query heads,
start_pos > 0, prefill and decode, a float mask, fp16/bf16) give eager ExecuTorch's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmcore.testing._files import atomic_dir
from mmcore.testing.cache import default_cache_dir
from mmcore.testing.llama_export import LlamaExportSpec, build_llama_program

pytestmark = pytest.mark.slow

PROMPT = "the quick brown fox jumps over the lazy dog"

# mmcore in a fresh process: greedy ids of two turns, and what the process loaded.
RUN_TEXT = """
import json, sys
from mmcore import GenerationConfig
from mmcore.runner import TextLLMRunner
pte, tokenizer, prompt = sys.argv[1:4]
greedy = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=8, num_bos=1)
runner = TextLLMRunner(pte, tokenizer)
first = runner.generate(prompt, greedy).tokens
second = runner.generate(" and then", greedy.replace(max_new_tokens=4, num_bos=0)).tokens
maps = open("/proc/self/maps").read()
print(json.dumps({"first": first, "second": second, "torch_imported": "torch" in sys.modules,
                  "executorch_custom_ops_loaded": "libcustom_ops_aot_lib" in maps,
                  "libtorch_loaded": "libtorch" in maps}))
"""

# mmcore in a fresh process: run a program's forward on .npy inputs, save the outputs.
RUN_METHOD = """
import sys
import numpy as np
from mmcore.program import Program
pte, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
inputs = [np.load(f"{folder}/in{i}.npy") for i in range(count)]
outputs = Program(pte).method("forward").execute(inputs)
for i, out in enumerate(outputs):
    np.save(f"{folder}/out{i}.npy", np.asarray(out))
"""


def _subprocess(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600, cwd="/", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Missing operator" not in done.stderr
    return done


# ---- whole export_llm programs ----

PROGRAMS = {
    "custom-ops-fp32": LlamaExportSpec(),
    "bf16": LlamaExportSpec(dtype="bf16"),
    "fp16": LlamaExportSpec(dtype="fp16"),
    "8da4w-emb4": LlamaExportSpec(qmode="8da4w", group_size=32, embedding_quantize="4,32"),
}


@pytest.fixture(scope="module", params=list(PROGRAMS))
def llama_program(request: pytest.FixtureRequest, vocab_size: int) -> Path:
    return build_llama_program(dataclasses.replace(PROGRAMS[request.param], vocab_size=vocab_size)).pte


def test_export_llm_program_on_mmcores_kernels_matches_cpp_runner(llama_program, tokenizer_dir, cpp):
    from mmcore import kernels

    report = json.loads(_subprocess(RUN_TEXT, str(llama_program), str(tokenizer_dir), PROMPT).stdout)
    kernels.prepare(llama_program)  # the kernel libraries the reference needs here (llama:: are ExecuTorch's)
    reference = cpp.text(llama_program)

    assert report["first"] == cpp.generate(reference, PROMPT, 8, num_bos=1)
    assert report["second"] == cpp.generate(reference, " and then", 4, num_bos=0)
    assert len(set(report["first"])) > 3
    assert not report["executorch_custom_ops_loaded"] and not report["libtorch_loaded"]
    assert not report["torch_imported"]


def test_own_kernels_and_executorchs_library_load_in_either_order(llama_program, tokenizer_dir):
    """ExecuTorch aborts the process on a duplicate (operator, kernel key): neither order may."""
    script = """
import ctypes, json, os, sys
from mmcore import GenerationConfig, native
from mmcore.runner import TextLLMRunner
pte, tokenizer, order = sys.argv[1:4]
def load_executorchs():
    import torch  # the library links libtorch
    ctypes.CDLL(str(native.executorch_root() / "extension/llm/custom_ops/libcustom_ops_aot_lib.so"), os.RTLD_GLOBAL)
greedy = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=6, num_bos=1)
if order == "executorch-first":
    load_executorchs()
first = TextLLMRunner(pte, tokenizer).generate("the quick brown fox", greedy).tokens
if order == "mmcore-first":
    load_executorchs()
second = TextLLMRunner(pte, tokenizer).generate("the quick brown fox", greedy).tokens
print(json.dumps([first, second]))
"""
    runs = {
        order: json.loads(_subprocess(script, str(llama_program), str(tokenizer_dir), order).stdout)
        for order in ("mmcore-first", "executorch-first")
    }
    assert runs["mmcore-first"][0] == runs["mmcore-first"][1] == runs["executorch-first"][0]
    assert runs["executorch-first"][0] == runs["executorch-first"][1]


# ---- one op on odd shapes, against eager ExecuTorch (its custom ops' torch implementations) ----


@dataclasses.dataclass(frozen=True)
class OpCase:
    """A tiny program calling one llama:: op. Shapes: q [1, S, H, D], caches [1, L, Hkv, D]."""

    op: str
    seq: int = 5
    heads: int = 6
    kv_heads: int = 2
    head_dim: int = 20
    cache_len: int = 16
    start_pos: int = 3
    causal: bool = True
    mask: bool = False
    scale: float | None = None
    dtype: str = "float32"

    @property
    def name(self) -> str:
        return "-".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())


OP_CASES = [
    OpCase("custom_sdpa"),  # GQA prefill at start_pos 3
    OpCase("custom_sdpa", seq=1, start_pos=11),  # decode
    OpCase("custom_sdpa", heads=3, kv_heads=3, head_dim=7, start_pos=0),  # MHA, odd head_dim, first chunk
    OpCase("custom_sdpa", dtype="bfloat16"),
    OpCase("custom_sdpa", dtype="float16", seq=1, start_pos=9),
    OpCase("custom_sdpa", causal=False, scale=0.3, start_pos=7),  # keys 0..start_pos+S-1, explicit scale
    OpCase("custom_sdpa", causal=False, mask=True),  # float mask over the whole cache
    OpCase("sdpa_with_kv_cache"),
    OpCase("sdpa_with_kv_cache", dtype="bfloat16", seq=2, start_pos=10),
    OpCase("update_cache", start_pos=4),
    OpCase("update_cache_with_indices"),
]


class _OpModule(torch.nn.Module):
    def __init__(self, case: OpCase) -> None:
        super().__init__()
        self.case = case
        dtype = getattr(torch, case.dtype)
        # Mutable buffers start as zeros in a program (ExecuTorch plans them; it keeps no initial data).
        shape = (1, case.cache_len, case.kv_heads, case.head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        c, dtype = self.case, getattr(torch, self.case.dtype)
        llama = torch.ops.llama
        if c.op == "update_cache":
            llama.update_cache(inputs[0].to(dtype), self.k_cache, c.start_pos)
            return self.k_cache.float() + 0
        if c.op == "update_cache_with_indices":
            llama.update_cache_with_indices(inputs[0].to(dtype), self.k_cache, 0, inputs[1])
            return self.k_cache.float() + 0
        q, k, v = (x.to(dtype) for x in inputs[:3])
        if c.op == "sdpa_with_kv_cache":
            caches = (self.k_cache, self.v_cache)
            return llama.sdpa_with_kv_cache(q, k, v, *caches, c.start_pos, c.seq, None, 0.0, c.causal, c.scale).float()
        mask = inputs[3] if c.mask else None
        return llama.custom_sdpa(q, k, v, c.start_pos, mask, 0.0, c.causal, c.scale).float()


def _op_inputs(case: OpCase) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    rows = (1, case.seq, case.kv_heads, case.head_dim)
    if case.op == "update_cache":
        return [torch.randn(rows, generator=g)]
    if case.op == "update_cache_with_indices":
        return [torch.randn(rows, generator=g), torch.tensor([[9, 2, 15, 0, 7][: case.seq]])]
    q = torch.randn(1, case.seq, case.heads, case.head_dim, generator=g)
    if case.op == "sdpa_with_kv_cache":
        return [q, torch.randn(rows, generator=g), torch.randn(rows, generator=g)]
    full = (1, case.cache_len, case.kv_heads, case.head_dim)
    made = [q, torch.randn(full, generator=g), torch.randn(full, generator=g)]
    if case.mask:
        allowed = torch.rand(case.seq, case.cache_len, generator=g) > 0.4
        allowed[:, 0] = True  # every row sees a key
        made.append(torch.where(allowed, 0.0, float("-inf")))
    return made


def _op_program(case: OpCase) -> Path:
    from importlib.metadata import version

    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401 - torch.ops.llama and its meta kernels
    from executorch.exir import EdgeCompileConfig, to_edge

    key = f"{case.name}-torch{torch.__version__}-et{version('executorch')}"
    target = default_cache_dir() / "llm-ops" / key.replace("/", "_")
    if not (target / "model.pte").exists():

        def build(folder: Path) -> None:
            exported = torch.export.export(_OpModule(case), tuple(_op_inputs(case)), strict=False)
            edge = to_edge(exported, compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True))
            (folder / "model.pte").write_bytes(edge.to_executorch().buffer)

        atomic_dir(target, build)
    return target / "model.pte"


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: f"{c.op}-{c.dtype}-S{c.seq}-pos{c.start_pos}-mask{c.mask}")
def test_llama_op_on_mmcores_kernel_matches_executorch(case: OpCase, tmp_path: Path) -> None:
    pte = _op_program(case)
    inputs = _op_inputs(case)
    for i, x in enumerate(inputs):
        np.save(tmp_path / f"in{i}.npy", x.numpy())
    _subprocess(RUN_METHOD, str(pte), str(tmp_path), str(len(inputs)))
    ours = np.load(tmp_path / "out0.npy")

    with torch.no_grad():
        expected = _OpModule(case)(*inputs).numpy()
    tolerance: dict[str, Any] = {"float32": {"atol": 1e-5, "rtol": 1e-5}}.get(case.dtype, {"atol": 2e-2, "rtol": 2e-2})
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, **tolerance)
    assert np.isfinite(ours).all()


def test_program_with_an_op_mmcore_lacks_names_it_and_the_package(tmp_path: Path) -> None:
    """Without torch (hidden from the subprocess) and with mmcore's kernels switched off, a typed error."""
    case = OpCase("custom_sdpa")
    pte = _op_program(case)
    script = """
import sys
sys.modules["torch"] = None  # torch not installed
from mmcore import kernels
from mmcore.errors import MissingKernelError
try:
    kernels.prepare(sys.argv[1])
except MissingKernelError as exc:
    print(exc)
"""
    env = {**os.environ, "MMCORE_LLM_KERNELS": "executorch"}
    message = _subprocess(script, str(pte), env=env).stdout
    assert "llama::custom_sdpa.out" in message and "pip install 'mmcore[torch]'" in message
