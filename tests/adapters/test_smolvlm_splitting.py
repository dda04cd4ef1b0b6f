"""SmolVLM image splitting (`do_image_splitting`) as the Hugging Face processor does it: tile pixels,
the `<fake_token_around_image><row_i_col_j>...<global-img>` prompt, one encoder call per tile in
prompt order, and greedy ids equal to HF `generate()` and the C++ runner, from raw images of odd
sizes (portrait, landscape, and small enough not to split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optimum.exporters.executorch")

from hf_variants import image_messages, preprocessed, variant_folder

import mmcore
from mmcore.errors import ContextOverflowError
from mmcore.testing import cpp_generate
from mmcore.testing import until_stop as until
from mmcore.testing.hf import HFModelDir, hf_generate, hf_inputs, processor_segments

pytestmark = pytest.mark.hf

PROMPT = "What is in it?"
MAX_NEW_TOKENS = 12


def _split_folder(tmp: Path, longest_edge: int) -> HFModelDir:
    """The tiny SmolVLM's folder with splitting on: longest edge `longest_edge`, 64-px tiles."""

    def update(config: dict[str, Any]) -> None:
        config.update(do_image_splitting=True, size={"longest_edge": longest_edge}, max_image_size={"longest_edge": 64})

    return variant_folder("smolvlm", tmp / f"smolvlm-split-{longest_edge}", update)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> HFModelDir:
    return _split_folder(tmp_path_factory.mktemp("smolvlm"), 128)


def _image(tmp: Path, width: int, height: int, seed: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    noise = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR))
    path = tmp / f"image-{width}x{height}.png"
    Image.fromarray(np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("width", "height", "longest_edge", "grid"),
    [
        (100, 60, 128, (2, 2)),
        (151, 50, 128, (1, 2)),
        (45, 131, 128, (2, 1)),
        (333, 97, 192, (1, 3)),
        (97, 201, 192, (3, 2)),
        (31, 17, 64, (0, 0)),
    ],
)
def test_tiles_and_prompt_equal_the_processor(tmp_path, width, height, longest_edge, grid):
    model_dir = _split_folder(tmp_path, longest_edge)
    ours, theirs = image_messages(_image(tmp_path, width, height, seed=width), PROMPT)
    model = mmcore.open_model(model_dir.path / "model.pte")
    reference = hf_inputs("smolvlm", model_dir, theirs)
    prompt = model.render(ours)

    assert prompt.ids == reference.input_ids
    rows, cols = grid
    assert len(prompt.media) == rows * cols + 1 == len(reference.media)
    for span, expected in zip(prompt.media, reference.media, strict=True):
        assert span.length == model_dir.tokens_per_item
        got = preprocessed(model, span.item)
        assert got.shape == (1, *expected.shape)
        assert isinstance(got, np.ndarray) and float(np.abs(got[0] - np.asarray(expected)).max()) <= 1e-6
    text = model.runner.tokenizer.decode(prompt.ids, skip_special_tokens=False)
    if rows:
        assert f"<row_{rows}_col_{cols}>" in text and "<global-img>" in text
    else:
        assert "<row_" not in text


@pytest.mark.parametrize(("width", "height", "longest_edge"), [(151, 50, 128), (45, 131, 128), (63, 41, 64)])
def test_greedy_ids_equal_hf_generate_and_the_cpp_runner(tmp_path, encoder_calls, width, height, longest_edge):
    model_dir = _split_folder(tmp_path, longest_edge)
    ours, theirs = image_messages(_image(tmp_path, width, height, seed=height), PROMPT)
    pte = model_dir.path / "model.pte"
    model = mmcore.open_model(pte)
    reference = hf_inputs("smolvlm", model_dir, theirs)
    config = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=MAX_NEW_TOKENS, ignore_eos=True)

    calls = encoder_calls(model)
    got = model.chat(ours, config).tokens
    expected = hf_generate("smolvlm", model_dir, reference, MAX_NEW_TOKENS)
    segments = list(processor_segments(reference, model_dir))
    cpp = cpp_generate(pte, model_dir.runner_tokenizer_dir, segments, MAX_NEW_TOKENS)
    stop = model_dir.stop_token_id
    assert until(got, stop) == until(expected, stop) == until(cpp, stop)
    assert len(calls) == len(reference.media)  # one encoder call per tile, global image included


def test_more_tiles_than_the_context_holds_is_a_typed_error(split_dir, tmp_path):
    big = _image(tmp_path, 100, 60, seed=1)  # 2 x 2 tiles + global: 80 placeholders
    model = mmcore.open_model(split_dir.path / "model.pte")
    content = [
        {"type": "image", "image": str(big)},
        {"type": "image", "image": str(big)},
        {"type": "text", "text": "?"},
    ]
    config = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=4)
    with pytest.raises(ContextOverflowError, match="context"):
        model.chat([{"role": "user", "content": content}], config)
    assert model.runner.pos == 0
    small = _image(tmp_path, 151, 50, seed=2)
    ok = model.chat(image_messages(small, PROMPT)[0], config)
    assert len(ok.tokens) == 4
