"""Running a saved Hugging Face processor on a chat."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmcore.testing.hf._family import HFInputs, Message, transformers_api

__all__ = ["chat_inputs"]


def chat_inputs(
    folder: Path, messages: Sequence[Message], drop: Sequence[str] = (), **processor_kwargs: Any
) -> HFInputs:
    """``AutoProcessor.apply_chat_template`` output for ``messages`` (generation prompt added), minus
    ``drop``; ``processor_kwargs`` go to the processor call."""
    processor = transformers_api().AutoProcessor.from_pretrained(folder)
    batch = processor.apply_chat_template(
        list(messages),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        **processor_kwargs,
    )
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k not in drop}
    ids = tensors["input_ids"]
    media = tensors.get("pixel_values", tensors.get("input_features"))
    return HFInputs(input_ids=[int(i) for i in ids[0]], media=media, model_kwargs=tensors)
