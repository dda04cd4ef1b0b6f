"""Exporting the tiny Hugging Face families with optimum-executorch, offline and cached."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mmcore.testing._files import atomic_file, file_lock
from mmcore.testing.hf.build import FamilyName, HFModelDir, build_hf_model, get_family

__all__ = ["MAX_LENGTH", "ExportOptions", "Recipe", "export_hf_folder", "export_hf_program"]

logger = logging.getLogger(__name__)

Recipe = Literal["xnnpack", "portable"]
#: KV-cache length (``get_max_seq_len``) of every exported program.
MAX_LENGTH = 128
_MAX_AUDIO_CHUNKS = 10


@dataclass(frozen=True)
class ExportOptions:
    """optimum-executorch's export options beyond the recipe, as ``main_export`` keywords.

    ``custom_sdpa`` lowers attention to ``llama::custom_sdpa``; ``custom_kv_cache`` updates the cache
    with ``llama::update_cache`` (a ring buffer for sliding-window layers). ``qlinear`` is one of
    optimum's linear configs (``"8da4w"``, ``"8da8w"``, ``"4w"``, ``"8w"``, or a primary and fallback
    such as ``"8da4w,8da8w"``); XNNPACK's 4-bit linears need ``qlinear_group_size`` to divide the
    input width and be a multiple of 32. ``qembedding`` is ``"4w"`` or ``"8w"`` (group size 0 = per row).
    ``dtype`` is the weights' and activations' dtype (``"float16"``, ``"bfloat16"``; default float32).
    """

    custom_sdpa: bool = False
    custom_kv_cache: bool = False
    qlinear: str | None = None
    qlinear_group_size: int | None = None
    qembedding: str | None = None
    qembedding_group_size: int | None = None
    dtype: str | None = None

    def suffix(self) -> str:
        """The part of the program's file name naming the options (empty for the defaults)."""
        parts = ["sdpa" if self.custom_sdpa else "", "kv" if self.custom_kv_cache else ""]
        if self.qlinear:
            parts.append(f"l{self.qlinear.replace(',', '+')}g{self.qlinear_group_size or 'd'}")
        if self.qembedding:
            parts.append(f"e{self.qembedding}g{self.qembedding_group_size or 0}")
        if self.dtype:
            parts.append(self.dtype)
        return "-".join(p for p in parts if p)

    def keywords(self) -> dict[str, Any]:
        """The options ``main_export`` takes, without the ones left at optimum's defaults."""
        renamed = {"custom_sdpa": "use_custom_sdpa", "custom_kv_cache": "use_custom_kv_cache"}
        return {renamed.get(k, k): v for k, v in asdict(self).items() if v not in (None, False)}


def export_hf_program(
    family: FamilyName | str,
    cache_dir: Path | None = None,
    recipe: Recipe = "xnnpack",
    max_length: int = MAX_LENGTH,
    options: ExportOptions | None = None,
) -> Path:
    """The cached ``.pte`` of ``family`` exported by optimum-executorch, exported on first use (~20-30 s).

    Uses ``main_export(task="multimodal-text-to-text", max_length=max_length)`` (default 128) on the
    folder of :func:`build_hf_model` and writes into it (``model.pte`` for XNNPACK, ``model-<recipe>.pte``
    otherwise, ``-<max_length>`` added for another length, ``-<options>`` for :class:`ExportOptions`).
    Needs no network access.
    """
    return export_hf_folder(build_hf_model(family, cache_dir), recipe, max_length, options)


def export_hf_folder(
    model_dir: HFModelDir,
    recipe: Recipe = "xnnpack",
    max_length: int = MAX_LENGTH,
    options: ExportOptions | None = None,
) -> Path:
    """:func:`export_hf_program` on a built folder (or a changed copy of one), cached in the folder."""
    options = options or ExportOptions()
    target = model_dir.pte_for(recipe, max_length, options.suffix())
    if target.is_file():
        return target
    with file_lock(model_dir.path / f".{target.name}.lock"):
        if target.is_file():
            return target
        logger.info("exporting tiny %s model with optimum-executorch (%s %s)", model_dir.family, recipe, options)
        start = time.perf_counter()
        atomic_file(target, lambda tmp: _export(model_dir, recipe, tmp, max_length, options))
        logger.info("exported %s in %.1f s (%d bytes)", target, time.perf_counter() - start, target.stat().st_size)
    return target


def _export(model_dir: HFModelDir, recipe: Recipe, out: Path, max_length: int, options: ExportOptions) -> None:
    """Run optimum-executorch's export of ``model_dir`` and move its program to ``out``."""
    from optimum.exporters.executorch import main_export

    family = get_family(model_dir.family)
    with tempfile.TemporaryDirectory(dir=model_dir.path.parent) as scratch:
        with _offline_example_inputs(model_dir.encoder_input_shape), family.export_patches():
            main_export(
                model_name_or_path=str(model_dir.path),
                task="multimodal-text-to-text",
                recipe=recipe,
                output_dir=scratch,
                max_length=max_length,
                **options.keywords(),
            )
        shutil.move(str(Path(scratch) / "model.pte"), str(out))


@contextlib.contextmanager
def _offline_example_inputs(shape: tuple[int, ...]) -> Iterator[None]:
    """Give optimum's encoder wrappers random example inputs instead of downloading sample media."""
    from optimum.exporters.executorch import integrations

    def vision_inputs(self: Any) -> tuple[torch.Tensor, None]:
        return torch.randn(shape, generator=torch.Generator().manual_seed(0)), None

    def audio_inputs(self: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        batch = torch.export.Dim("enc_batch_size_dim", min=1, max=_MAX_AUDIO_CHUNKS)
        features = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        return features, {"input_features": {0: batch}}

    owners = (integrations.VisionExportableModule, integrations.AudioExportableModule)
    saved = [owner.prepare_export_inputs for owner in owners]
    integrations.VisionExportableModule.prepare_export_inputs = vision_inputs
    integrations.AudioExportableModule.prepare_export_inputs = audio_inputs
    try:
        yield
    finally:
        for owner, method in zip(owners, saved, strict=True):
            owner.prepare_export_inputs = method
