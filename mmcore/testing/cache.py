"""On-disk cache of exported test programs."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import torch

from mmcore.testing._files import atomic_file, default_cache_dir, file_lock
from mmcore.testing.specs import ProgramSpec, _digest

__all__ = ["build_program", "cached_data_path", "default_cache_dir", "program_cache_key"]

logger = logging.getLogger(__name__)


def _executorch_version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source builds
        return "unknown"


def program_cache_key(spec: ProgramSpec) -> str:
    """Key of ``spec`` together with the torch and executorch versions that export it."""
    versions = {"torch": torch.__version__, "executorch": _executorch_version()}
    return _digest({"spec": spec.cache_key(), **versions})


def cached_program_path(spec: ProgramSpec, cache_dir: Path | None = None) -> Path:
    """Where :func:`build_program` keeps the ``.pte`` of ``spec`` (it may not exist yet)."""
    root = cache_dir if cache_dir is not None else default_cache_dir()
    return root / f"{spec.kind}-{spec.backend}-{program_cache_key(spec)}.pte"


def cached_data_path(spec: ProgramSpec, cache_dir: Path | None = None) -> Path | None:
    """Where :func:`build_program` keeps the external weights (``.ptd``) of ``spec``, if it has them."""
    return cached_program_path(spec, cache_dir).with_suffix(".ptd") if spec.external_weights else None


def build_program(spec: ProgramSpec, cache_dir: Path | None = None) -> Path:
    """Path of the ``.pte`` for ``spec``, exporting it on first use (seconds) and reusing it afterwards.

    ``cache_dir`` defaults to ``$MMCORE_TESTING_CACHE`` or ``testing`` in mmcore's cache directory. Writes are
    atomic and serialised by a file lock, so parallel or interrupted runs never see a partial file.
    """
    root = cache_dir if cache_dir is not None else default_cache_dir()
    key = program_cache_key(spec)
    target = cached_program_path(spec, root)
    if target.is_file():
        return target
    with file_lock(root / f".{key}.lock"):
        if target.is_file():  # built by another process while we waited
            return target
        from mmcore.testing.export import export_program

        logger.info("building test program %s", target.name)

        def write(tmp: Path) -> None:  # the weights file (if any) is in place before the program
            export_program(spec, tmp, cached_data_path(spec, root))

        return atomic_file(target, write)
