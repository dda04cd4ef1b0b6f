"""Cached model folders of the tiny Hugging Face families."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from mmcore.testing._files import atomic_dir, default_cache_dir, file_lock
from mmcore.testing.hf._family import Family, FamilyFacts, Modality
from mmcore.testing.hf._hf_files import RUNNER_TOKENIZER_DIR
from mmcore.testing.hf.gemma3 import Gemma3Family
from mmcore.testing.hf.llava import LlavaFamily
from mmcore.testing.hf.smolvlm import SmolVLMFamily
from mmcore.testing.hf.voxtral import VoxtralFamily
from mmcore.testing.specs import _digest

__all__ = [
    "FAMILIES",
    "HF_REVISION",
    "FamilyName",
    "HFModelDir",
    "build_hf_model",
    "build_hf_variant",
    "get_family",
    "hf_cache_key",
]

logger = logging.getLogger(__name__)

FamilyName = Literal["gemma3", "llava", "smolvlm", "voxtral"]
#: Bumped whenever shared building code changes what any family produces.
HF_REVISION = 1
#: The families, by name.
FAMILIES: dict[str, Family] = {f.name: f for f in (Gemma3Family(), LlavaFamily(), SmolVLMFamily(), VoxtralFamily())}
_FACTS_FILE = "mmcore_hf.json"
_VERSIONED = ("transformers", "tokenizers", "executorch", "optimum-executorch")


def get_family(name: str) -> Family:
    """The family called ``name`` (one of :data:`FAMILIES`)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; expected one of {sorted(FAMILIES)}") from None


def _version(package: str) -> str:
    """Installed version of ``package``, or ``"missing"``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def hf_cache_key(name: str) -> str:
    """Key of a family's folder: its revisions plus the versions that build and export it."""
    family = get_family(name)
    versions = {pkg: _version(pkg) for pkg in _VERSIONED}
    return _digest(
        {"family": name, "rev": HF_REVISION, "family_rev": family.revision, "torch": torch.__version__, **versions}
    )


@dataclass(frozen=True)
class HFModelDir:
    """A built tiny model folder and the facts tests need about it.

    ``media_token_id`` is the image placeholder (vision) or ``[AUDIO]`` (audio); each image or audio
    chunk expands to ``tokens_per_item`` of them. ``stop_token_id`` is a special token no template
    renders: the EOS of ``runner_tokenizer_dir`` and the stop token of :func:`hf_generate`.
    """

    family: str
    path: Path
    modality: Modality
    media_token_id: int
    tokens_per_item: int
    bos_token_id: int
    eos_token_ids: tuple[int, ...]
    stop_token_id: int
    vocab_size: int
    encoder_input_shape: tuple[int, ...]
    tokenizer_path: Path
    runner_tokenizer_dir: Path

    @property
    def pte(self) -> Path:
        """Where :func:`export_hf_program` writes the XNNPACK program (may not exist yet)."""
        return self.pte_for("xnnpack")

    def pte_for(self, recipe: str, max_length: int = 128, options: str = "") -> Path:
        """Where :func:`export_hf_program` writes the program of ``recipe`` (may not exist yet);
        ``options`` is :meth:`ExportOptions.suffix`."""
        name = "model" if recipe == "xnnpack" else f"model-{recipe}"
        name = name if max_length == 128 else f"{name}-{max_length}"
        return self.path / (f"{name}-{options}.pte" if options else f"{name}.pte")

    @property
    def image_token_id(self) -> int | None:
        """The image placeholder id, or None for audio models."""
        return self.media_token_id if self.modality == "vision" else None

    @property
    def audio_token_id(self) -> int | None:
        """The ``[AUDIO]`` id, or None for vision models."""
        return self.media_token_id if self.modality == "audio" else None

    @classmethod
    def load(cls, path: Path) -> HFModelDir:
        """Read the facts a built folder records."""
        data = json.loads((path / _FACTS_FILE).read_text())
        facts = FamilyFacts(
            **{
                **data["facts"],
                "eos_token_ids": tuple(data["facts"]["eos_token_ids"]),
                "encoder_input_shape": tuple(data["facts"]["encoder_input_shape"]),
            }
        )
        family = get_family(data["family"])
        recorded = dataclasses.asdict(facts)
        tokenizer_file = recorded.pop("tokenizer_file")
        return cls(
            family=family.name,
            path=path,
            modality=family.modality,
            **recorded,
            tokenizer_path=path / tokenizer_file,
            runner_tokenizer_dir=path / RUNNER_TOKENIZER_DIR,
        )


def build_hf_model(family: FamilyName | str, cache_dir: Path | None = None) -> HFModelDir:
    """The cached folder of a tiny random-weight ``family`` model, built on first use (seconds).

    The folder holds ``config.json``, safetensors weights, the tokenizer (``tokenizer.json`` +
    ``tokenizer_config.json``, or ``tekken.json``), processor files and ``runner_tokenizer/``.
    Writes are atomic and serialised by a file lock.
    """
    fam = get_family(family)
    root = cache_dir if cache_dir is not None else default_cache_dir()
    key = hf_cache_key(fam.name)
    target = root / f"hf-{fam.name}-{key}"
    if (target / _FACTS_FILE).is_file():
        return HFModelDir.load(target)
    with file_lock(root / f".hf-{fam.name}-{key}.lock"):
        if not (target / _FACTS_FILE).is_file():
            logger.info("building tiny %s model into %s", fam.name, target)
            start = time.perf_counter()

            def fill(tmp: Path) -> None:
                facts = fam.write(tmp)
                record = {"family": fam.name, "key": key, "facts": dataclasses.asdict(facts)}
                (tmp / _FACTS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

            atomic_dir(target, fill)
            logger.info("built tiny %s model in %.1f s", fam.name, time.perf_counter() - start)
    return HFModelDir.load(target)


def build_hf_variant(
    family: FamilyName | str, name: str, change: Callable[[Path], None], cache_dir: Path | None = None
) -> HFModelDir:
    """A cached copy of ``family``'s folder (without programs) that ``change`` edited once, e.g. a
    smaller ``sliding_window`` in ``config.json``; ``name`` identifies the change in the cache."""
    base = build_hf_model(family, cache_dir)
    target = base.path.with_name(f"{base.path.name}-{name}")
    if (target / _FACTS_FILE).is_file():
        return HFModelDir.load(target)
    with file_lock(base.path.with_name(f".{target.name}.lock")):
        if not (target / _FACTS_FILE).is_file():

            def fill(tmp: Path) -> None:
                shutil.copytree(base.path, tmp, ignore=shutil.ignore_patterns("*.pte", ".*"), dirs_exist_ok=True)
                change(tmp)

            atomic_dir(target, fill)
    return HFModelDir.load(target)
