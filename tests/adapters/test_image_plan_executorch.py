"""Image plans of programs without a Hugging Face processor: ExecuTorch's LLaVA contract (one image
per conversation, segments tokenized one by one) and the generic adapter (parts in order)."""

from __future__ import annotations

import pytest

pytest.importorskip("mmcore_image")

import mmcore
from mmcore.errors import AdapterError
from mmcore.inspection import inspect_program
from mmcore.testing import VisionEncoderSpec


def test_executorch_llava_plan_is_one_call_and_respects_the_image_limit(et_llava_pte, tokenizer_dir, png_100x60):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    plan = model.plan_image(1000, 700)
    ours = [{"role": "user", "content": [{"type": "image", "image": str(png_100x60)}, {"type": "text", "text": "?"}]}]
    prompt = model.render(ours)
    text_only = model.render([{"role": "user", "content": [{"type": "text", "text": "?"}]}])
    assert (plan.encoder_calls, plan.spans) == (1, tuple(span.length for span in prompt.media))
    assert plan.prompt_tokens == len(prompt) - len(text_only) == model.profile.tokens_per_item["image"]
    assert plan.fits == model.profile.max_items["image"] == 1  # the context would hold more


def test_the_generic_adapter_says_why_it_has_no_plan(make_spec, program_path, tokenizer_dir):
    pte = program_path(make_spec(vision=VisionEncoderSpec()))
    model = mmcore.open_model(pte, tokenizer=tokenizer_dir)
    assert model.name == "generic"
    with pytest.raises(AdapterError, match="one encoder call"):
        model.plan_image(640, 480)
    [plan] = inspect_program(pte, tokenizer=tokenizer_dir, image_sizes=[(640, 480)])["adapter"]["image_plans"]
    assert plan["error"].startswith("AdapterError: ") and (plan["width"], plan["height"]) == (640, 480)
