"""Acceptance: mmcore on raw files (a 100x60 PNG, a stereo 22.05-kHz WAV) and a chat message gives the
prompt ids of the Hugging Face processor and the greedy tokens of HF `generate` and of ExecuTorch's C++
runner fed the HF-preprocessed tensors, for Gemma 3, LLaVA, SmolVLM and Voxtral."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optimum.exporters.executorch")

import mmcore
from mmcore.errors import PlaceholderMismatchError
from mmcore.testing import cpp_generate
from mmcore.testing import until_stop as until
from mmcore.testing.hf import HFModelDir, build_hf_model, export_hf_program, hf_generate, hf_inputs, processor_segments

pytestmark = pytest.mark.hf

FAMILIES = ("gemma3", "llava", "smolvlm", "voxtral")
MAX_NEW_TOKENS = 24
PROMPT = "What is in it? Tell me about the cat."


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> tuple[HFModelDir, Path]:
    name = request.param
    return build_hf_model(name), export_hf_program(name, recipe="portable")


def _messages(model_dir: HFModelDir, png: Path, wav: Path) -> tuple[list[Any], list[Any]]:
    """The chat as mmcore gets it (file paths) and as the HF processor gets it (decoded media).

    The reference audio is mixed down and resampled with soxr HQ, as transformers' `load_audio`
    (librosa, `res_type="soxr_hq"`) does.
    """
    import soundfile
    import soxr
    from PIL import Image

    if model_dir.modality == "vision":
        ours: dict[str, Any] = {"type": "image", "image": str(png)}
        theirs: dict[str, Any] = {"type": "image", "image": Image.open(png).convert("RGB")}
    else:
        samples, rate = soundfile.read(wav, dtype="float32")
        mono = soxr.resample(samples.mean(axis=1), rate, 16_000, quality="HQ").astype(np.float32)
        ours, theirs = {"type": "audio", "audio": str(wav)}, {"type": "audio", "audio": mono}
    text = {"type": "text", "text": PROMPT}
    return [{"role": "user", "content": [ours, text]}], [{"role": "user", "content": [theirs, text]}]


def test_open_model_matches_the_processor_hf_generate_and_the_cpp_runner(family, png_100x60, stereo_wav):
    _check_parity(*family, png_100x60, stereo_wav)


def test_xnnpack_export_matches_too(png_100x60, stereo_wav):
    """The recipe users ship (the other tests use portable exports, which build twice as fast)."""
    _check_parity(build_hf_model("llava"), export_hf_program("llava", recipe="xnnpack"), png_100x60, stereo_wav)


def _check_parity(model_dir: HFModelDir, pte: Path, png_100x60: Path, stereo_wav: Path) -> None:
    ours, theirs = _messages(model_dir, png_100x60, stereo_wav)
    model = mmcore.open_model(pte)
    assert model.name == model_dir.family
    reference = hf_inputs(model_dir.family, model_dir, theirs)
    assert model.render(ours).ids == reference.input_ids
    config = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=MAX_NEW_TOKENS, ignore_eos=True)
    got = model.chat(ours, config).tokens
    expected = hf_generate(model_dir.family, model_dir, reference, MAX_NEW_TOKENS)
    cpp = cpp_generate(
        pte, model_dir.runner_tokenizer_dir, list(processor_segments(reference, model_dir)), MAX_NEW_TOKENS
    )
    stop = model_dir.stop_token_id
    assert until(got, stop) == until(expected, stop) == until(cpp, stop)
    assert len(set(until(got, stop))) > 3


def test_stop_tokens_and_settings_come_from_the_model_files(family):
    model_dir, pte = family
    model = mmcore.open_model(pte)
    eos = model.runner.metadata.eos_ids
    assert set(model_dir.eos_token_ids) <= eos
    assert model.profile.tokens_per_item == {
        "image" if model_dir.modality == "vision" else "audio": model_dir.tokens_per_item
    }
    if model_dir.family == "gemma3":
        assert model.profile.modality_settings["image"]["resample"] == 2  # bilinear, from preprocessor_config.json
    if model_dir.family == "voxtral":
        assert model.profile.modality_settings["audio"]["n_frames"] == 200


def test_placeholder_count_disagreeing_with_the_encoder(family, png_100x60, stereo_wav):
    model_dir, pte = family
    ours, _ = _messages(model_dir, png_100x60, stereo_wav)
    model = mmcore.open_model(pte, adapter_options={"tokens_per_item": model_dir.tokens_per_item - 1})
    assert model.render(ours).ids.count(model_dir.media_token_id) % (model_dir.tokens_per_item - 1) == 0
    with pytest.raises(PlaceholderMismatchError, match="placeholder tokens"):
        model.chat(ours, mmcore.GenerationConfig(temperature=0.0, max_new_tokens=2))


def test_session_turns_render_through_the_chat_template(family, png_100x60, stereo_wav):
    model_dir, pte = family
    ours, _ = _messages(model_dir, png_100x60, stereo_wav)
    model = mmcore.open_model(pte)
    session = model.session()
    config = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=6)
    first = session.send(ours[0], config)
    second = session.send("And then?", config)
    assert second.stats.extra["reused_prompt_tokens"] >= len(model.render(ours)) - 1
    history = model.render(session.messages[:2], add_generation_prompt=False).ids
    answer = [t for t in first.tokens if t not in model.profile.stop_token_ids and t not in model_dir.eos_token_ids]
    assert any(history[i : i + len(answer)] == answer for i in range(len(history)))


def test_speculative_decoding_gives_the_plain_ids(family, png_100x60, stereo_wav):
    """Prompt lookup (adaptive, and always drafting) and a draft model (the target itself, so every draft
    is right) on each family's real export give the greedy ids of plain decoding. A draft model reads
    token ids only: after an image or audio it stands aside (and says so) until a later text turn."""
    model_dir, pte = family
    with_media, _ = _messages(model_dir, png_100x60, stereo_wav)
    text_only = [{"role": "user", "content": PROMPT}]
    model = mmcore.open_model(pte)
    itself = {"method": "draft", "draft_model": str(pte), "num_draft_tokens": 4, "adaptive": False}
    for messages in (with_media, text_only):
        plain = model.chat(
            messages, mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=MAX_NEW_TOKENS)
        )
        for speculative in ("ngram", {"method": "ngram", "adaptive": False}, itself):
            config = mmcore.GenerationConfig(
                temperature=0.0, echo=False, max_new_tokens=MAX_NEW_TOKENS, speculative=speculative
            )
            result = model.chat(messages, config)
            assert result.tokens == plain.tokens, (messages, speculative)
            info = result.stats.extra["speculative"]
            if speculative is itself and messages is text_only:
                assert info["draft_tokens_accepted"] == info["draft_tokens_proposed"] > 0, info
                assert info["verification_calls"] < len(result.tokens) - 1
            elif speculative is itself:
                assert "non-token inputs" in info["draft_unavailable"]
