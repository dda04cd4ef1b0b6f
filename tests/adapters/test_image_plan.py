"""`mmcore inspect --image-size WxH` and `ChatModel.plan_image`: encoder calls, placeholder and prompt
tokens of one image of a given size, checked against the prompts mmcore and the Hugging Face
processor build for a real image of that size (SmolVLM splitting, Gemma 3 pan-and-scan, plain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optimum.exporters.executorch")

from hf_variants import image_messages, variant_folder

import mmcore
from mmcore.cli import main
from mmcore.errors import ContextOverflowError
from mmcore.testing.hf import HFModelDir, build_hf_model, export_hf_program, hf_inputs

pytestmark = pytest.mark.hf

PROMPT = "?"


def _smolvlm_split(config: dict[str, Any]) -> None:
    config.update(do_image_splitting=True, size={"longest_edge": 128}, max_image_size={"longest_edge": 64})


def _gemma3_pan_and_scan(config: dict[str, Any]) -> None:
    config.update(
        do_pan_and_scan=True,
        pan_and_scan_min_crop_size=16,
        pan_and_scan_max_num_crops=4,
        pan_and_scan_min_ratio_to_activate=1.2,
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HFModelDir]:
    root = tmp_path_factory.mktemp("plans")
    export_hf_program("llava", recipe="portable")
    llava = build_hf_model("llava")
    return {
        "smolvlm": variant_folder("smolvlm", root / "smolvlm-split", _smolvlm_split),
        "gemma3": variant_folder("gemma3", root / "gemma3-pas", _gemma3_pan_and_scan, max_length=256),
        "llava": llava,
    }


def _pte(model_dir: HFModelDir) -> Path:
    local = model_dir.path / "model.pte"
    return local if model_dir.family != "llava" else model_dir.pte_for("portable")


def _image(tmp: Path, width: int, height: int) -> Path:
    from PIL import Image

    path = tmp / f"image-{width}x{height}.png"
    pixels = np.random.default_rng(width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize(
    ("family", "width", "height", "calls"),
    [
        ("smolvlm", 100, 60, 5),  # 2 x 2 tiles + the global image
        ("smolvlm", 151, 50, 3),  # 1 x 2 tiles + the global image
        ("smolvlm", 1000, 700, 5),  # resized to 128 x 90 first
        ("gemma3", 150, 40, 5),  # 4 crops + the image
        ("gemma3", 41, 97, 3),  # 2 crops + the image
        ("gemma3", 60, 55, 1),  # too square to crop
        ("llava", 1000, 700, 1),  # encoded whole
    ],
)
def test_plan_equals_the_prompts_built_for_a_real_image(folders, tmp_path, family, width, height, calls):
    model_dir = folders[family]
    model = mmcore.open_model(_pte(model_dir))
    plan = model.plan_image(width, height)

    ours, theirs = image_messages(_image(tmp_path, width, height), PROMPT)
    prompt = model.render(ours)
    text_only = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    reference = hf_inputs(family, model_dir, theirs)
    reference_text = hf_inputs(family, model_dir, text_only)

    assert plan.encoder_calls == calls == len(prompt.media) == len(reference.media)
    assert plan.spans == tuple(span.length for span in prompt.media)
    assert plan.placeholder_tokens == reference.input_ids.count(model_dir.media_token_id)
    assert plan.prompt_tokens == len(reference.input_ids) - len(reference_text.input_ids)
    context = model.runner.metadata.max_context_len
    assert plan.fits == (context - 1 - len(reference_text.input_ids)) // plan.prompt_tokens


def test_inspect_prints_the_plan_of_each_size(folders, capsys):
    pte = _pte(folders["smolvlm"])
    assert main(["inspect", str(pte), "--image-size", "100x60", "--image-size", "151x50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metadata"]["modality"] == "vision"  # optimum's string constants are read
    plans = report["adapter"]["image_plans"]
    model = mmcore.open_model(pte)
    assert [{k: v for k, v in p.items() if k != "summary"} for p in plans] == [
        model.plan_image(100, 60).to_json(),
        model.plan_image(151, 50).to_json(),
    ]
    assert main(["inspect", str(pte), "--image-size", "100x60"]) == 0
    out = capsys.readouterr().out
    assert "image 100x60: 5 encoder calls (4 tiles or crops + the whole image), 80 placeholder tokens" in out


def test_a_malformed_image_size_is_a_usage_error(folders, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", str(_pte(folders["llava"])), "--image-size", "1000"])
    assert exit_info.value.code == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_tiles_beyond_the_context_are_refused_before_any_encoding(folders, tmp_path, encoder_calls):
    model = mmcore.open_model(_pte(folders["smolvlm"]))
    assert model.plan_image(100, 60).fits == 0  # 137 positions: more than the 128 of the context
    config = mmcore.GenerationConfig(temperature=0.0, max_new_tokens=2)
    model.chat(image_messages(_image(tmp_path, 151, 50), PROMPT)[0], config)
    position = model.runner.pos
    calls = encoder_calls(model)
    too_big = image_messages(_image(tmp_path, 100, 60), PROMPT)[0]
    with pytest.raises(ContextOverflowError, match=r"5 image encoder calls with 80 placeholder tokens") as error:
        model.chat(too_big, config)
    assert "\n" not in str(error.value) and "--image-size" in str(error.value)
    assert calls == [], "no tile may be encoded"
    assert model.runner.pos == position  # the runner is unchanged


def test_a_sliding_session_drops_old_turns_whose_tiles_no_longer_fit(folders, tmp_path, encoder_calls):
    model = mmcore.open_model(_pte(folders["smolvlm"]))
    plan = model.plan_image(151, 50)
    assert plan.fits == 1  # a second such image needs a shorter history
    picture = image_messages(_image(tmp_path, 151, 50), PROMPT)[0][0]
    config = mmcore.GenerationConfig(temperature=0.0, max_new_tokens=2)
    strict, sliding = model.session(), model.session(context_policy="sliding")
    for session in (strict, sliding):
        session.send(picture, config)
    calls = encoder_calls(model)
    with pytest.raises(ContextOverflowError, match="placeholder tokens"):
        strict.send(picture, config)
    assert calls == []
    result = sliding.send(picture, config)
    assert result.stats.extra["dropped_messages"] == 1  # the first turn and its answer
    assert len(calls) == plan.encoder_calls  # only the new turn's image is encoded


def test_mmcore_run_with_too_many_tiles_is_one_error_line(folders, tmp_path, capsys):
    pte = _pte(folders["smolvlm"])
    picture = _image(tmp_path, 100, 60)
    assert main(["run", str(pte), "--image", str(picture), "--text", "?", "--max-new-tokens", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmcore: error:") and "\n" not in err
    assert "5 image encoder calls with 80 placeholder tokens" in err and "--image-size WxH" in err
