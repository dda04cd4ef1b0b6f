"""The committed weights file: saving a trained model and rebuilding it from the file."""

from __future__ import annotations

from pathlib import Path

import torch

from mmcore.demo_model.model import DemoConfig, DemoModel

__all__ = ["WEIGHTS_PATH", "load_model", "save_weights"]

#: The committed weights (config and float32 state dict, loadable with ``weights_only=True``).
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights.pt"


def save_weights(model: DemoModel, path: Path = WEIGHTS_PATH) -> Path:
    """Write ``model``'s config and parameters to ``path``."""
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "state_dict": state}, path)
    return path


def load_model(path: Path = WEIGHTS_PATH, *, use_kv_cache: bool = False) -> DemoModel:
    """The model saved at ``path`` in eval mode (``use_kv_cache``: the batch-1 inference form)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = DemoModel(DemoConfig.from_dict(payload["config"]), use_kv_cache=use_kv_cache)
    model.load_state_dict(payload["state_dict"])
    return model.eval()
