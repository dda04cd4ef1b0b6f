"""Lowering a :class:`ProgramSpec` to an ExecuTorch ``.pte`` file."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from mmcore.testing.models import build_modules
from mmcore.testing.specs import ProgramSpec
from mmcore.testing.tokenizer import SPECIAL_TOKENS

__all__ = ["example_inputs", "export_program"]

logger = logging.getLogger(__name__)

_IMAGE_DTYPES = {"float32": torch.float32, "uint8": torch.uint8, "bfloat16": torch.bfloat16}
#: Example sequence length; >1 so export does not specialise the dynamic dim to 0/1.
_EXAMPLE_T = 4


def _image_dtype(name: str) -> torch.dtype:
    return _IMAGE_DTYPES[name]


def example_inputs(spec: ProgramSpec, method: str) -> tuple[tuple[Tensor, ...], tuple[Any, ...] | None]:
    """Example inputs and ``dynamic_shapes`` used to export ``method`` of ``spec``."""
    d = spec.decoder
    t = min(_EXAMPLE_T, spec.max_input_len) if spec.dynamic_shape else 1
    seq = Dim("seq", min=1, max=spec.max_input_len) if spec.dynamic_shape else None
    tokens = torch.zeros(1, t, dtype=torch.int64)  # [1, T]
    if spec.position_form == "start":
        positions, pos_dims = torch.zeros(1, dtype=torch.int64), None  # [1]
    else:
        positions, pos_dims = torch.arange(t, dtype=torch.int64), ({0: seq} if seq else None)  # [T]
    if method == "token_embedding":
        return (tokens,), (({1: seq},) if seq else None)
    if method == "text_decoder":
        embeds = torch.zeros(1, t, d.dim)  # [1, T, D]
        return (embeds, positions), (({1: seq}, pos_dims) if seq else None)
    if method == "forward":
        if not spec.use_kv_cache:
            return (tokens,), ({1: seq},)
        return (tokens, positions), (({1: seq}, pos_dims) if seq else None)
    if method == "vision_encoder" and spec.vision is not None:
        image = torch.zeros(spec.vision.input_shape, dtype=_image_dtype(spec.vision.dtype))
        return (image,), None
    if method == "audio_encoder" and spec.audio is not None:
        a = spec.audio
        if a.kind == "mel" and a.max_batch > 1:
            batch = Dim("batch", min=1, max=a.max_batch)
            return (torch.zeros(a.input_shape(min(2, a.max_batch))),), ({0: batch},)
        return (torch.zeros(a.input_shape(1)),), None
    raise ValueError(f"{method!r} is not a method of {spec}")


def _export_method(spec: ProgramSpec, name: str, module: nn.Module) -> ExportedProgram:
    args, dynamic_shapes = example_inputs(spec, name)
    with torch.no_grad():
        return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)


def export_program(
    spec: ProgramSpec, path: Path, data_path: Path | None = None, *, weights: dict[str, Tensor] | None = None
) -> Path:
    """Export ``spec`` (all its methods and metadata in one program) to the ``.pte`` file ``path``.

    With ``spec.external_weights`` the weights go to the ``.ptd`` file ``data_path`` (default:
    ``path`` with the suffix ``.ptd``). ``weights`` (a decoder state dict) replaces the seeded ones.
    """
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    t0 = time.perf_counter()
    decoder, methods = build_modules(spec)
    if weights is not None:
        decoder.load_state_dict(weights, strict=False)  # caches and RoPE tables are not in it
    programs = {name: _export_method(spec, name, m) for name, m in methods.items()}
    t1 = time.perf_counter()

    partitioner: Any = None
    if spec.backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = {name: [XnnpackPartitioner()] for name in programs}
    metadata = spec.metadata(bos_id=SPECIAL_TOKENS.index("<|begin_of_text|>"))
    edge = to_edge_transform_and_lower(programs, partitioner=partitioner, constant_methods=metadata)
    t2 = time.perf_counter()

    et = edge.to_executorch(
        ExecutorchBackendConfig(
            sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass(), external_constants=spec.external_weights
        )
    )
    if spec.external_weights:
        _write_weights(et, data_path if data_path is not None else path.with_suffix(".ptd"))
    path.write_bytes(et.buffer)
    t3 = time.perf_counter()
    logger.info(
        "exported %s program (%s) to %s: %d B; torch.export %.2fs, lower %.2fs, to_executorch %.2fs",
        spec.kind,
        spec.backend,
        path,
        path.stat().st_size,
        t1 - t0,
        t2 - t1,
        t3 - t2,
    )
    return path


def _write_weights(et: Any, data_path: Path) -> None:
    """Write the program's one external-constants file to ``data_path``."""
    with tempfile.TemporaryDirectory(dir=data_path.parent) as tmp:
        et.write_tensor_data_to_file(tmp)
        written = list(Path(tmp).glob("*.ptd"))
        if len(written) != 1:
            raise RuntimeError(f"expected one external-constants file, ExecuTorch wrote {written}")
        os.replace(written[0], data_path)
