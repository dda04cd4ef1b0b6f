"""Helpers of the tiling/cropping tests: a tiny HF family's folder with changed processor settings,
chat messages about one image (as mmcore and as the HF processor get them), and mmcore's pixels."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import mmcore
from mmcore.registry import PrefillContext
from mmcore.testing.hf import HFModelDir, build_hf_model, export_hf_program

__all__ = ["image_messages", "preprocessed", "variant_folder"]


def variant_folder(
    family: str, folder: Path, update: Callable[[dict[str, Any]], None], *, max_length: int = 128
) -> HFModelDir:
    """`family`'s tiny folder copied to `folder` (once) with its portable program, `update` applied to
    the image processor's settings (`preprocessor_config.json`, and `processor_config.json`'s
    `image_processor` where present)."""
    if not folder.exists():
        base = build_hf_model(family)
        pte = export_hf_program(family, recipe="portable", max_length=max_length)
        shutil.copytree(base.path, folder, ignore=shutil.ignore_patterns("*.pte", ".*"))
        shutil.copy(pte, folder / "model.pte")
        for name in ("preprocessor_config.json", "processor_config.json"):
            path = folder / name
            config = json.loads(path.read_text()) if path.exists() else None
            if config is None or (name == "processor_config.json" and "image_processor" not in config):
                continue
            update(config.get("image_processor", config) if name == "processor_config.json" else config)
            path.write_text(json.dumps(config))
    return HFModelDir.load(folder)


def image_messages(path: Path, prompt: str) -> tuple[list[Any], list[Any]]:
    """A user turn with the image at `path` and `prompt`: mmcore's (a path) and HF's (a PIL image)."""
    from PIL import Image

    text = {"type": "text", "text": prompt}
    ours = [{"role": "user", "content": [{"type": "image", "image": str(path)}, text]}]
    theirs = [{"role": "user", "content": [{"type": "image", "image": Image.open(path).convert("RGB")}, text]}]
    return ours, theirs


def preprocessed(model: mmcore.ChatModel, item: Any) -> Any:
    """The pixels mmcore's image plugin gives `model`'s encoder for `item`."""
    handler = model.runner._plugins().modality_registry().get("image")
    assert handler is not None
    ctx = PrefillContext(model.runner.program, model.runner.tokenizer, model.runner.modality_settings["image"])
    return np.asarray(handler.preprocess(item, ctx))
