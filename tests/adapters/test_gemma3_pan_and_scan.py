"""Gemma 3 pan-and-scan (`do_pan_and_scan`) as the Hugging Face processor does it: the crops' pixels,
the "Here is the original image … crops …" prompt, one encoder call per image and crop in prompt
order, and greedy ids equal to HF `generate()` and the C++ runner, from raw images of odd sizes
(landscape, portrait, too square or too small to crop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optimum.exporters.executorch")

from hf_variants import image_messages, preprocessed, variant_folder

import mmcore
from mmcore.errors import AdapterError
from mmcore.testing import cpp_generate
from mmcore.testing import until_stop as until
from mmcore.testing.hf import HFModelDir, hf_generate, hf_inputs, processor_segments

pytestmark = pytest.mark.hf

PROMPT = "What is in it?"
MAX_NEW_TOKENS = 8


def _pan_and_scan_folder(tmp: Path, **settings: Any) -> HFModelDir:
    """The tiny Gemma 3's folder with pan-and-scan on (`settings` override the processor's), its
    program exported with a 256-position context (an image and two crops take 140)."""

    def update(config: dict[str, Any]) -> None:
        config.update(
            do_pan_and_scan=True,
            pan_and_scan_min_crop_size=settings.get("min_crop_size", 16),
            pan_and_scan_max_num_crops=settings.get("max_num_crops", 4),
            pan_and_scan_min_ratio_to_activate=settings.get("min_ratio", 1.2),
        )

    name = "gemma3-pas-" + "-".join(f"{k}{v}" for k, v in sorted(settings.items()))
    return variant_folder("gemma3", tmp / name, update, max_length=256)


def _image(tmp: Path, width: int, height: int, seed: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path = tmp / f"image-{width}x{height}-{seed}.png"
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("width", "height", "crops"),
    [
        (100, 40, 3),  # landscape 2.5:1 -> round half up: 3 crops
        (150, 40, 4),  # 3.75:1 -> 4 crops, the most allowed
        (41, 97, 2),  # portrait 2.4:1 -> 2 crops
        (36, 120, 3),  # portrait 3.3:1 -> 3 crops of 36 x 40
        (60, 55, 0),  # below the activation ratio
        (30, 20, 0),  # crops would be narrower than the minimum crop size
    ],
)
def test_crops_and_prompt_equal_the_processor(tmp_path, width, height, crops):
    model_dir = _pan_and_scan_folder(tmp_path)
    ours, theirs = image_messages(_image(tmp_path, width, height, seed=width), PROMPT)
    model = mmcore.open_model(model_dir.path / "model.pte")
    reference = hf_inputs("gemma3", model_dir, theirs)
    prompt = model.render(ours)

    assert prompt.ids == reference.input_ids
    assert len(prompt.media) == len(reference.media)
    assert len(prompt.media) == crops + 1 if crops else len(prompt.media) == 1
    for span, expected in zip(prompt.media, reference.media, strict=True):
        assert span.length == model_dir.tokens_per_item
        got = preprocessed(model, span.item)
        assert got.shape == (1, *expected.shape)
        assert float(np.abs(got[0] - np.asarray(expected)).max()) <= 1e-6
    text = model.runner.tokenizer.decode(prompt.ids, skip_special_tokens=False)
    assert ("here are some crops" in text) == (crops > 0)


@pytest.mark.parametrize(("width", "height"), [(150, 40), (41, 97), (60, 55)])
def test_greedy_ids_equal_hf_generate_and_the_cpp_runner(tmp_path, encoder_calls, width, height):
    model_dir = _pan_and_scan_folder(tmp_path)
    ours, theirs = image_messages(_image(tmp_path, width, height, seed=height), PROMPT)
    pte = model_dir.path / "model.pte"
    model = mmcore.open_model(pte)
    reference = hf_inputs("gemma3", model_dir, theirs)
    config = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=MAX_NEW_TOKENS, ignore_eos=True)

    calls = encoder_calls(model)
    got = model.chat(ours, config).tokens
    expected = hf_generate("gemma3", model_dir, reference, MAX_NEW_TOKENS)
    segments = list(processor_segments(reference, model_dir))
    cpp = cpp_generate(pte, model_dir.runner_tokenizer_dir, segments, MAX_NEW_TOKENS)
    stop = model_dir.stop_token_id
    assert until(got, stop) == until(expected, stop) == until(cpp, stop)
    assert len(calls) == len(reference.media)  # one encoder call for the image and one per crop


def test_invalid_pan_and_scan_settings_are_a_typed_error(tmp_path):
    model_dir = _pan_and_scan_folder(tmp_path, max_num_crops=1)
    with pytest.raises(AdapterError, match="pan_and_scan"):
        mmcore.open_model(model_dir.path / "model.pte")
