"""What every tiny Hugging Face family provides: files on disk, export inputs and processor inputs."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = [
    "ENCODER_SIZES",
    "NEVER_TOKEN",
    "TEXT_SIZES",
    "Family",
    "FamilyFacts",
    "HFInputs",
    "Message",
    "Modality",
    "reinit_weights",
    "transformers_api",
]

Modality = Literal["vision", "audio"]
#: A chat message as Hugging Face processors take it (``{"role": ..., "content": [{"type": ...}, ...]}``).
Message = Mapping[str, Any]

#: A special token no template renders, used as the stop token of reference runs.
NEVER_TOKEN = "<|never|>"

#: Text decoder of every family: 2 layers, hidden 64, 4 heads / 2 KV heads of 16.
TEXT_SIZES: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 512,
}
#: Vision / audio encoders: 2 layers, hidden 32.
ENCODER_SIZES: dict[str, int] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}

_INIT_STD = 0.2
_SEED = 0


def transformers_api() -> Any:
    """The ``transformers`` module, imported on first use and typed loosely (it is only partly annotated)."""
    import transformers

    return transformers


def reinit_weights(model: torch.nn.Module) -> None:
    """Draw every parameter of rank >= 2 from N(0, 0.2) (seeded), so a tiny model attends to its context."""
    gen = torch.Generator().manual_seed(_SEED)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * _INIT_STD)


@dataclass(frozen=True)
class FamilyFacts:
    """Token ids and shapes a built model folder records (JSON-serialisable)."""

    media_token_id: int
    tokens_per_item: int
    bos_token_id: int
    eos_token_ids: tuple[int, ...]
    stop_token_id: int
    vocab_size: int
    encoder_input_shape: tuple[int, ...]
    tokenizer_file: str


@dataclass
class HFInputs:
    """What the Hugging Face processor makes of one chat: prompt ids and the encoder input.

    ``media`` is ``pixel_values`` (vision; ``[n_images, 3, H, W]``) or ``input_features`` (audio;
    ``[n_chunks, n_mels, n_frames]``); ``model_kwargs`` are all tensors handed to ``generate``.
    """

    input_ids: list[int]
    media: torch.Tensor | None
    model_kwargs: dict[str, torch.Tensor] = field(default_factory=dict)


class Family(ABC):
    """One tiny architecture: how to write its folder, export it and preprocess a chat for it."""

    name: str
    modality: Modality
    #: The transformers model class saved in the family's folder.
    model_class: str
    #: Bumped whenever this family builds something different.
    revision: int = 1

    @abstractmethod
    def write(self, folder: Path) -> FamilyFacts:
        """Write config, weights, tokenizer and processor files of a fresh tiny model into ``folder``."""

    def load_model(self, folder: Path) -> Any:
        """The Hugging Face model saved in ``folder`` (eval mode, float32)."""
        model_type = getattr(transformers_api(), self.model_class)
        return model_type.from_pretrained(folder, dtype="float32").eval()

    @abstractmethod
    def prepare(self, folder: Path, messages: Sequence[Message]) -> HFInputs:
        """Processor output for ``messages`` with the generation prompt appended."""

    def export_patches(self) -> contextlib.AbstractContextManager[None]:
        """Patches to transformers / optimum needed while this family is exported (none by default)."""
        return _nothing()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield
