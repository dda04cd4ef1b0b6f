"""Tiny text programs built with ExecuTorch's own Llama exporter (``export_llm``), cached.

These are the programs users get from ``python -m executorch.extension.llm.export.export_llm``:
custom SDPA and KV-cache-update ops (``llama::custom_sdpa``, ``llama::update_cache``), 8da4w
linears with 4- or 8-bit embeddings, half precision. Build one, then compare a runner with the
eager twin::

    program = build_llama_program(LlamaExportSpec(qmode="8da4w", embedding_quantize="4,32"))
    ids = program.eager_greedy(prompt_ids, max_new_tokens=8)   # only exact for unquantized fp32

The exporter runs in a subprocess (it imports hydra and mutates torch's global state); the
checkpoint is seeded (without one ``export_llm`` leaves RMSNorm weights uninitialised).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mmcore.testing._files import atomic_dir, default_cache_dir, file_lock
from mmcore.testing.cache import _executorch_version
from mmcore.testing.specs import _digest, _Keyed
from mmcore.testing.tokenizer import SPECIAL_TOKENS

__all__ = ["LlamaExportSpec", "LlamaProgram", "LlamaDtype", "build_llama_program"]

logger = logging.getLogger(__name__)

LlamaDtype = Literal["fp32", "fp16", "bf16"]
#: Bumped whenever the building code changes what a spec produces.
_REVISION = 1
_PROGRAM = "model.pte"
_CHECKPOINT = "checkpoint.pth"
_PARAMS = "params.json"
_DONE = "mmcore_llama.json"


@dataclass(frozen=True)
class LlamaExportSpec(_Keyed):
    """One ``export_llm`` configuration of a tiny Llama decoder.

    Widths are multiples of 32 so that XNNPACK's 4-bit linears (group sizes in multiples of 32)
    quantize every linear, not only some. ``qmode``/``group_size``/``embedding_quantize`` are
    ``export_llm``'s ``quantization.*`` fields (e.g. ``"8da4w"``, 32, ``"4,32"`` or ``"8,0"``).
    """

    vocab_size: int = 512
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    hidden_dim: int = 128
    max_seq_len: int = 32
    max_context_len: int = 64
    dtype: LlamaDtype = "fp32"
    use_sdpa_with_kv_cache: bool = True
    qmode: str | None = None
    group_size: int = 32
    embedding_quantize: str | None = None
    xnnpack: bool = True
    seed: int = 0
    init_std: float = 0.2

    def params(self) -> dict[str, Any]:
        """The ``params.json`` of the model."""
        return {
            "dim": self.dim,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "vocab_size": self.vocab_size,
            "hidden_dim": self.hidden_dim,
            "norm_eps": 1e-5,
            "rope_theta": 10000.0,
        }

    def llm_config(self, out_dir: Path) -> dict[str, Any]:
        """``export_llm``'s config (the YAML a user would write) writing ``out_dir/model.pte``."""
        metadata = {"get_bos_id": SPECIAL_TOKENS.index("<|begin_of_text|>"), "get_eos_ids": [1]}
        config: dict[str, Any] = {
            "base": {
                "model_class": "llama3",
                "checkpoint": str(out_dir / _CHECKPOINT),
                "params": str(out_dir / _PARAMS),
                "metadata": json.dumps(metadata),
            },
            "model": {
                "use_kv_cache": True,
                "use_sdpa_with_kv_cache": self.use_sdpa_with_kv_cache,
                "enable_dynamic_shape": True,
                "dtype_override": self.dtype,
            },
            "export": {
                "max_seq_length": self.max_seq_len,
                "max_context_length": self.max_context_len,
                "output_dir": str(out_dir),
                "output_name": str(out_dir / _PROGRAM),  # a name ending in .pte is used as the path
            },
            "backend": {"xnnpack": {"enabled": self.xnnpack, "extended_ops": self.xnnpack}},
        }
        if self.qmode is not None or self.embedding_quantize is not None:
            config["quantization"] = {
                "qmode": self.qmode,
                "group_size": self.group_size if self.qmode else None,
                "embedding_quantize": self.embedding_quantize,
            }
        return config

    @property
    def quantized(self) -> bool:
        """True when weights are quantized (numbers differ from the float model)."""
        return self.qmode is not None or self.embedding_quantize is not None


@dataclass(frozen=True)
class LlamaProgram:
    """A built program with its checkpoint and parameters."""

    spec: LlamaExportSpec
    path: Path
    pte: Path
    checkpoint: Path

    def eager_model(self) -> torch.nn.Module:
        """ExecuTorch's eager Llama ``Transformer`` (no KV cache) with the checkpoint's weights."""
        from executorch.examples.models.llama.llama_transformer import construct_transformer
        from executorch.examples.models.llama.model_args import ModelArgs

        s = self.spec
        args = ModelArgs(**s.params(), max_seq_len=s.max_context_len, max_context_len=s.max_context_len)
        model: torch.nn.Module = construct_transformer(args)
        model.load_state_dict(torch.load(self.checkpoint, weights_only=True))
        model.eval()
        return model

    def eager_greedy(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        """Greedy ids of the eager model, re-feeding the whole sequence each step."""
        model = self.eager_model()
        ids = list(prompt)
        out: list[int] = []
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = model(torch.tensor([ids], dtype=torch.int64))  # [1, V]
                token = int(torch.argmax(logits[0]).item())
                out.append(token)
                ids.append(token)
        return out


def _seeded_checkpoint(spec: LlamaExportSpec) -> dict[str, torch.Tensor]:
    """Every weight of the model, seeded: N(0, init_std) matrices, norms near 1."""
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    args = ModelArgs(**spec.params(), max_seq_len=spec.max_context_len, max_context_len=spec.max_context_len)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in construct_transformer(args).state_dict().items()}
    g = torch.Generator().manual_seed(spec.seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if not name.endswith(".weight"):
            continue  # rope tables and caches are buffers the model computes
        noise = torch.randn(shape, generator=g)
        state[name] = noise * spec.init_std if len(shape) >= 2 else 1.0 + 0.1 * noise
    return state


def llama_cache_key(spec: LlamaExportSpec) -> str:
    """Key of ``spec`` with the torch and executorch versions that export it."""
    versions = {"torch": torch.__version__, "executorch": _executorch_version()}
    return _digest({"spec": spec.cache_key(), "rev": _REVISION, **versions})


def build_llama_program(spec: LlamaExportSpec, cache_dir: Path | None = None) -> LlamaProgram:
    """The cached program of ``spec``, exported with ``export_llm`` on first use (about a minute)."""
    root = cache_dir if cache_dir is not None else default_cache_dir()
    key = llama_cache_key(spec)
    target = root / f"llama-{spec.dtype}-{key}"
    if not (target / _DONE).is_file():
        with file_lock(root / f".llama-{key}.lock"):
            if not (target / _DONE).is_file():
                atomic_dir(target, lambda tmp: _build(spec, tmp))
    return LlamaProgram(spec=spec, path=target, pte=target / _PROGRAM, checkpoint=target / _CHECKPOINT)


def _build(spec: LlamaExportSpec, out: Path) -> None:
    """Write the checkpoint and params, then run ``export_llm`` in a fresh interpreter."""
    torch.save(_seeded_checkpoint(spec), out / _CHECKPOINT)
    (out / _PARAMS).write_text(json.dumps(spec.params(), indent=2) + "\n")
    config = out / "llm_config.json"
    config.write_text(json.dumps(spec.llm_config(out), indent=2) + "\n")
    logger.info("exporting %s with export_llm", spec)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(config)],
        cwd=out,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    if done.returncode != 0 or not (out / _PROGRAM).is_file():
        raise RuntimeError(f"export_llm failed for {spec}:\n{done.stderr[-4000:]}")
    record = {"spec": dataclasses.asdict(spec), "seconds": round(time.perf_counter() - start, 1)}
    (out / _DONE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _export(config_path: Path) -> None:
    """Run ExecuTorch's ``export_llama`` on a config, the way ``export_llm --config`` does."""
    from executorch.examples.models.llama.export_llama_lib import export_llama
    from executorch.extension.llm.export.config.llm_config import LlmConfig
    from omegaconf import OmegaConf

    raw = OmegaConf.create(json.loads(config_path.read_text()))
    export_llama(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LlmConfig), raw)))


if __name__ == "__main__":
    _export(Path(sys.argv[1]))
