"""Shared writers for the Hugging Face tokenizer, runner tokenizer and model files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from mmcore.testing.hf._family import NEVER_TOKEN, reinit_weights, transformers_api

__all__ = ["RUNNER_TOKENIZER_DIR", "hf_tokenizer", "save_model", "write_runner_tokenizer"]

#: Sub-directory holding the tokenizer handed to ExecuTorch's C++ runner (EOS = the never-emitted token).
RUNNER_TOKENIZER_DIR = "runner_tokenizer"


def hf_tokenizer(bpe: Tokenizer, bos: str, eos: str, pad: str, named: Mapping[str, str] | None = None) -> Any:
    """A ``PreTrainedTokenizerFast`` over ``bpe``; ``named`` become attributes such as ``image_token``."""
    return transformers_api().PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens=dict(named or {}),
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )


def write_runner_tokenizer(folder: Path, bos: str) -> Path:
    """Copy ``folder/tokenizer.json`` next to a ``tokenizer_config.json`` whose EOS is the never token."""
    target = folder / RUNNER_TOKENIZER_DIR
    target.mkdir()
    (target / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    config = {"bos_token": bos, "eos_token": NEVER_TOKEN, "tokenizer_class": "PreTrainedTokenizerFast"}
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return target


def save_model(model_class: Any, config: Any, folder: Path) -> None:
    """Instantiate ``model_class(config)``, re-draw its weights and save it as safetensors."""
    model = model_class(config)
    reinit_weights(model)
    model.eval()
    model.save_pretrained(folder)
