"""The tiny Hugging Face kit: built folders, processor output, and ExecuTorch's C++ runner on the
exported programs agreeing token for token with Hugging Face ``generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("optimum.exporters.executorch")

from mmcore.testing import cpp_generate, piece_table, until_stop
from mmcore.testing.hf import (
    HFModelDir,
    Message,
    Recipe,
    build_hf_model,
    export_hf_program,
    hf_generate,
    hf_inputs,
    processor_segments,
)

pytestmark = pytest.mark.hf

FAMILY_NAMES = ("gemma3", "llava", "smolvlm", "voxtral")
MAX_NEW_TOKENS = 24


def _image(height: int = 48, width: int = 80) -> Any:
    """A deterministic non-square RGB picture."""
    from PIL import Image

    pixels = np.random.default_rng(3).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _audio(seconds: float = 3.1) -> np.ndarray:
    """A deterministic 16-kHz chirp with noise (two 2-s chunks)."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    noise = np.random.default_rng(5).normal(0.0, 0.05, t.shape)
    return (0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t) + noise).astype(np.float32)


def _messages(model_dir: HFModelDir) -> list[Message]:
    media = (
        {"type": "image", "image": _image()} if model_dir.modality == "vision" else {"type": "audio", "audio": _audio()}
    )
    return [{"role": "user", "content": [media, {"type": "text", "text": "What is in it? Tell me about the cat."}]}]


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def built(request: pytest.FixtureRequest) -> tuple[HFModelDir, Path]:
    name = request.param
    return build_hf_model(name), export_hf_program(name, recipe=_recipe(name))


def _recipe(name: str) -> Recipe:
    """XNNPACK for one family (the recipe users ship), portable for the rest (exports twice as fast)."""
    return "xnnpack" if name == "llava" else "portable"


def test_folder_holds_model_tokenizer_and_processor(built: tuple[HFModelDir, Path]) -> None:
    model_dir, pte = built
    names = {p.name for p in model_dir.path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    if model_dir.family == "voxtral":
        assert model_dir.tokenizer_path.name == "tekken.json"
        assert json.loads(model_dir.tokenizer_path.read_text())["config"]["default_vocab_size"] == model_dir.vocab_size
    else:
        assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json", "chat_template.jinja"} <= names
    config = json.loads((model_dir.runner_tokenizer_dir / "tokenizer_config.json").read_text())
    assert piece_table(model_dir.runner_tokenizer_dir)[config["eos_token"]] == model_dir.stop_token_id
    assert len(piece_table(model_dir.runner_tokenizer_dir)) == model_dir.vocab_size
    assert pte == model_dir.pte_for(_recipe(model_dir.family)) and pte.stat().st_size > 100_000


def test_build_is_cached(built: tuple[HFModelDir, Path]) -> None:
    model_dir, pte = built
    assert build_hf_model(model_dir.family) == model_dir
    assert export_hf_program(model_dir.family, recipe=_recipe(model_dir.family)) == pte


def test_program_metadata(built: tuple[HFModelDir, Path]) -> None:
    from executorch.runtime import Runtime

    model_dir, pte = built
    program = Runtime.get().load_program(pte)
    encoder = "vision_encoder" if model_dir.modality == "vision" else "audio_encoder"
    assert {"token_embedding", "text_decoder", encoder} <= set(program.method_names)
    assert program.load_method("get_max_seq_len").execute([])[0] == 128
    assert program.load_method("get_vocab_size").execute([])[0] == model_dir.vocab_size
    assert program.load_method(f"{model_dir.modality}_token_id").execute([])[0] == model_dir.media_token_id


def test_processor_expands_media(built: tuple[HFModelDir, Path]) -> None:
    model_dir, _ = built
    inputs = hf_inputs(model_dir.family, model_dir, _messages(model_dir))
    assert inputs.media is not None and inputs.media.dtype == torch.float32
    n_items = inputs.media.shape[0]
    assert inputs.input_ids.count(model_dir.media_token_id) == n_items * model_dir.tokens_per_item
    if model_dir.modality == "vision":
        assert tuple(inputs.media.shape[1:]) == model_dir.encoder_input_shape[1:]
    else:
        assert n_items == 2  # 3.1 s in 2-s chunks
        assert tuple(inputs.media.shape[1:]) == model_dir.encoder_input_shape[1:]
    assert "token_type_ids" not in inputs.model_kwargs


def test_cpp_runner_matches_hf_generate(built: tuple[HFModelDir, Path]) -> None:
    model_dir, pte = built
    inputs = hf_inputs(model_dir.family, model_dir, _messages(model_dir))
    expected = hf_generate(model_dir.family, model_dir, inputs, MAX_NEW_TOKENS)
    got = cpp_generate(pte, model_dir.runner_tokenizer_dir, list(processor_segments(inputs, model_dir)), MAX_NEW_TOKENS)
    # The C++ runner does not check its first token for EOS; compare up to the first stop token.
    expected, got = until_stop(expected, model_dir.stop_token_id), until_stop(got, model_dir.stop_token_id)
    assert got == expected
    assert len(set(expected)) > 3, "the tiny model should not repeat one token"
