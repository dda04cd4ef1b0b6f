"""Building the demo ``.pte`` from the committed weights, once per cache directory.

Finding an already exported program imports neither torch nor the exporter (``mmcore demo`` runs
on a torch-free install once the program exists); exporting it needs ``mmcore[torch]``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmcore.cache import cache_dir as mmcore_cache_dir
from mmcore.demo_model.constants import BOS_TOKEN, EOS_TOKEN

__all__ = [
    "EXPORT_STEPS",
    "ExportProgress",
    "cached_demo_path",
    "demo_metadata",
    "export_demo_program",
    "tokenizer_dir",
]

logger = logging.getLogger(__name__)

#: Bumped whenever export code changes what the same weights build.
_BUILD_REVISION = 2
# The committed files (as mmcore.demo_model.weights / .tokenizer name them; not imported: torch, tokenizers).
_PACKAGE = Path(__file__).resolve().parent
WEIGHTS_PATH = _PACKAGE / "weights.pt"
TOKENIZER_DIR = _PACKAGE / "tokenizer"

#: `progress(step, done, total)` after each export step (a step's name, steps done, `EXPORT_STEPS`).
ExportProgress = Callable[[str, int, int], None]
#: Steps of an export: load the weights, `torch.export` each of the 4 methods, lower, serialise, write.
EXPORT_STEPS = 8


def tokenizer_dir() -> Path:
    """The demo model's tokenizer directory (``tokenizer.json`` + ``tokenizer_config.json``)."""
    return TOKENIZER_DIR


def _executorch_version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source builds
        return "unknown"


def _cache_key() -> str:
    """Digest of the weights, the tokenizer, the build revision and the exporting versions."""
    digest = hashlib.sha256()
    for path in (WEIGHTS_PATH, TOKENIZER_DIR / "tokenizer.json"):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    versions = {"rev": _BUILD_REVISION, "executorch": _executorch_version()}
    digest.update(json.dumps(versions, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cached_demo_path(cache_dir: Path | None = None) -> Path:
    """Where :func:`export_demo_program` keeps the ``.pte`` (it may not exist yet): ``demo`` in
    mmcore's cache directory (:func:`mmcore.cache.cache_dir`) unless ``cache_dir`` is given."""
    root = cache_dir if cache_dir is not None else mmcore_cache_dir() / "demo"
    return root / f"demo-model-{_cache_key()}.pte"


def demo_metadata() -> dict[str, Any]:
    """The program's constant metadata methods."""
    from mmcore.demo_model.tokenizer import load_tokenizer
    from mmcore.demo_model.weights import load_model

    model = load_model()
    tok = load_tokenizer()
    c = model.config
    return {
        "get_max_seq_len": c.max_seq_len,
        "get_max_context_len": c.max_context_len,
        "get_bos_id": tok.token_to_id(BOS_TOKEN),
        "get_eos_ids": [tok.token_to_id(EOS_TOKEN)],
        "get_vocab_size": c.vocab_size,
        "use_kv_cache": True,
        "enable_dynamic_shape": True,
        "use_sdpa_with_kv_cache": False,
    }


def _export(path: Path, progress: ExportProgress) -> None:
    """Lower every method of the committed model (portable kernels) into the ``.pte`` file ``path``."""
    import torch
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    from mmcore.demo_model.methods import method_modules
    from mmcore.demo_model.weights import load_model

    began = time.perf_counter()
    done = 0

    def step(name: str) -> None:
        nonlocal done
        done += 1
        progress(name, done, EXPORT_STEPS)

    model = load_model(use_kv_cache=True)
    step("weights loaded")
    programs = {}
    with torch.no_grad():
        for name, (module, args, dynamic_shapes) in method_modules(model).items():
            programs[name] = torch.export.export(module.eval(), args, dynamic_shapes=dynamic_shapes, strict=False)
            step(f"exported {name}")
    edge = to_edge_transform_and_lower(programs, constant_methods=demo_metadata())
    step("lowered to the edge dialect")
    program = edge.to_executorch(ExecutorchBackendConfig(sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass()))
    step("serialised")
    path.write_bytes(program.buffer)
    step("written")
    logger.info(
        "exported the demo program to %s (%d B) in %.1f s", path, path.stat().st_size, time.perf_counter() - began
    )


def export_demo_program(cache_dir: Path | None = None, *, progress: ExportProgress | None = None) -> Path:
    """Path of the demo ``.pte``, exported from the committed weights on first use and reused afterwards.

    ``cache_dir`` defaults to ``demo`` in mmcore's cache directory (see :func:`cached_demo_path`).
    Writes are atomic and serialised by a file lock (removed afterwards). ``progress`` is called
    after each of the export's `EXPORT_STEPS` steps. Warnings that torch and ExecuTorch issue while
    exporting (deprecations inside the exporter) are logged at DEBUG level, not shown.
    """
    target = cached_demo_path(cache_dir)
    if target.is_file():
        return target
    from mmcore.testing._files import atomic_file, file_lock

    with file_lock(target.with_name(f".{target.stem}.lock")):
        if target.is_file():
            return target
        logger.info("building the demo program %s", target.name)
        report = progress or (lambda name, done, total: None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = atomic_file(target, lambda tmp: _export(tmp, report))
        for warning in caught:
            logger.debug("while exporting the demo program: %s: %s", warning.category.__name__, warning.message)
        return path
