"""Gemma 4 as ExecuTorch 1.5.1's example exports it: the committed tiny fixture (built by
`tests/fixtures/gemma4/make_fixture.py` with the example's own export code, see its README) runs text,
image and audio requests through `mmcore.open_model`, the runner and `mmcore run`, and gives the ids
recorded from the example's runner (`run_gemma4.py`'s functions through `executorch.runtime`), HF
`generate()` from the same weights, the example's runner functions run live here, and ExecuTorch's
runtime fed mmcore's own prompt ids and media embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmcore
from mmcore.cli import main
from mmcore.errors import ConfigError, InvalidInputError
from mmcore.inputs import TokensInput
from mmcore.joint_decoder import JointDecoderRunner
from mmcore.speculative import SpeculativeConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gemma4"
PTE = FIXTURE / "model.pte"
TOKENIZER = FIXTURE / "tokenizer.model"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text())
RUNS = REFERENCE["runs"]
MAX_NEW = REFERENCE["max_new_tokens"]
GREEDY = mmcore.GenerationConfig(temperature=0.0, max_new_tokens=MAX_NEW, echo=False)
STOP = {REFERENCE["tokens"]["eos"], REFERENCE["tokens"]["turn_end"]}


def _message(kind: str | None) -> list[dict[str, Any]]:
    run = RUNS[kind or "text"]
    content: list[dict[str, Any]] = []
    if kind == "image":
        content.append({"type": "image", "image": str(FIXTURE / "image.png")})
    if kind == "audio":
        content.append({"type": "audio", "audio": str(FIXTURE / "audio.wav")})
    content.append({"type": "text", "text": run["prompt"]})
    return [{"role": "user", "content": content}]


def _until_stop(ids: list[int]) -> list[int]:
    """The reference loop's ids: up to and including the first stop token (EOS or <turn|>)."""
    for index, token in enumerate(ids):
        if token in STOP:
            return ids[: index + 1]
    return ids


@pytest.fixture(scope="module")
def model() -> mmcore.ChatModel:
    return mmcore.open_model(PTE, tokenizer=TOKENIZER)


def test_fixture_provenance_and_references_are_recorded():
    provenance = REFERENCE["provenance"]
    assert provenance["executorch"].startswith("1.5") and provenance["torch"].startswith("2.13")
    assert "export_single_pte" in provenance["export"] and "run_gemma4" in provenance["runner"]
    for kind in ("text", "image", "audio"):  # HF generate() from the same weights agrees
        assert _until_stop(RUNS[kind]["hf_generate"]) == RUNS[kind]["generated"]
    assert RUNS["image"]["num_media_tokens"] > 0 and RUNS["audio"]["num_media_tokens"] > 0
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 12_000_000


def test_adapter_is_detected_and_the_decoder_contract_used(model):
    assert model.name == "gemma4"
    assert "text_decoder(input_ids, input_pos, inputs_embeds)" in model.detection.reason
    model.runner.load()
    assert isinstance(model.runner.decoder, JointDecoderRunner)
    assert model.runner.metadata.max_context_len == 1024  # no metadata methods: the decoder's bound + 1


QUANTIZED = FIXTURE / "quantized"


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_quantized_custom_sdpa_export_equals_the_example_runner(kind, capfd):
    """The example's default export options (8da4w+emb8 text, 8da4w audio, 8da8w vision, group 32,
    `llama::custom_sdpa`): kernels load without an import by the user, quietly, and ids equal the
    example runner's on the same program."""
    reference = json.loads((QUANTIZED / "reference.json").read_text())
    assert (
        "8da4w+emb8" in reference["provenance"]["export"]
        and "use_custom_sdpa=True" in reference["provenance"]["export"]
    )
    run = reference["runs"][kind]
    quantized = mmcore.open_model(QUANTIZED / "model.pte", tokenizer=QUANTIZED / "tokenizer.model")
    messages = _message(None if kind == "text" else kind)
    assert quantized.render(messages).ids == run["prompt_ids"]
    assert _until_stop(quantized.chat(messages, GREEDY).tokens) == run["generated"]
    assert run["generated"] != RUNS[kind]["generated"]  # the quantization did change the numbers
    assert "Missing operator" not in capfd.readouterr().err


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_prompt_ids_and_greedy_ids_equal_the_example_runner(model, kind):
    run = RUNS[kind]
    messages = _message(None if kind == "text" else kind)
    assert model.render(messages).ids == run["prompt_ids"]
    got = model.chat(messages, GREEDY).tokens
    assert _until_stop(got) == run["generated"]
    assert len(set(run["generated"])) > 3


def test_image_pixels_equal_the_example_preprocessing():
    pytest.importorskip("executorch.examples.models.gemma4.image_utils")
    from executorch.examples.models.gemma4.image_utils import preprocess_image as example
    from mmcore_adapters.gemma4_media import preprocess_image

    for size in [(150, 200), (333, 97), (48, 1000), (700, 700)]:
        from PIL import Image

        rng = np.random.default_rng(sum(size))
        path = FIXTURE.parent / f"_tmp_{size[0]}x{size[1]}.png"
        try:
            Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(path)
            pixels, positions, tokens = example(str(path))
            ours = preprocess_image(path, 280)
        finally:
            path.unlink(missing_ok=True)
        assert np.array_equal(ours.pixel_values, pixels.numpy())
        assert np.array_equal(ours.positions, positions.numpy())
        assert ours.tokens == tokens


def test_live_executorch_runtime_on_our_tensors_gives_the_same_ids(model):
    """ExecuTorch's Python runtime, driven as `run_gemma4.py` drives it, fed mmcore's prompt ids and
    media embeddings: the same ids as mmcore (and as the recorded reference)."""
    runtime = pytest.importorskip("executorch.runtime")
    import torch

    program = runtime.Runtime.get().load_program(str(PTE))
    decoder = program.load_method("text_decoder")
    for kind in ("image", "audio"):
        messages = _message(kind)
        ids = model.render(messages).ids
        inputs = model.renderer.render(messages)
        embeds = np.zeros((1, len(ids), 32), dtype=np.float32)
        pos = 0
        for item in inputs:
            if isinstance(item, TokensInput):
                pos += len(item.ids)
            else:
                rows = item.embeddings.shape[1]
                embeds[0, pos : pos + rows] = item.embeddings[0]
                pos += rows
        logits = decoder.execute([torch.tensor([ids]), torch.arange(len(ids)), torch.from_numpy(embeds)])[0]
        token = int(torch.argmax(logits[0, -1]).item())
        generated = [token]
        for step in range(MAX_NEW - 1):
            if token in STOP:
                break
            step_inputs = [torch.tensor([[token]]), torch.tensor([len(ids) + step]), torch.zeros(1, 1, 32)]
            token = int(torch.argmax(decoder.execute(step_inputs)[0][0, -1]).item())
            generated.append(token)
        assert generated == RUNS[kind]["generated"]


def test_runner_takes_rendered_inputs_and_a_session_continues(model):
    runner = model.runner
    runner.reset()
    result = runner.generate(model.renderer.render(_message("audio")), GREEDY)
    assert _until_stop(result.tokens) == RUNS["audio"]["generated"]
    session = model.session()
    first = session.send(_message("text")[0], GREEDY)
    assert _until_stop(first.tokens) == RUNS["text"]["generated"]
    second = session.send("one two three", GREEDY)
    image_turn = session.send(_message("image")[0], GREEDY)
    hits = model.runner.encoder_cache.stats.hits
    session.send("one", GREEDY)  # re-renders the history: the image comes from the encoder cache
    assert model.runner.encoder_cache.stats.hits == hits + 1 and image_turn.tokens
    history = [*_message("text"), {"role": "assistant", "tokens": first.tokens}]
    history.append({"role": "user", "content": "one two three"})
    fresh = model.chat(history, GREEDY)  # the whole history from an empty cache
    assert second.tokens == fresh.tokens


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_cli_run_gives_the_reference_ids(capsys, kind):
    run = RUNS[kind]
    args = ["run", str(PTE), "--tokenizer", str(TOKENIZER)]
    if kind == "image":
        args += ["--image", str(FIXTURE / "image.png")]
    if kind == "audio":
        args += ["--audio", str(FIXTURE / "audio.wav")]
    args += ["--text", run["prompt"]]  # media first, as the example's prompt
    assert main([*args, "--max-new-tokens", str(MAX_NEW), "--temperature", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert _until_stop(out["tokens"]) == run["generated"]


def test_bad_inputs_are_typed_errors(model):
    with pytest.raises(InvalidInputError, match="remote URL"):
        model.render([{"role": "user", "content": [{"type": "image", "image": "https://x/y.png"}]}])
    with pytest.raises(InvalidInputError, match="at least"):
        model.render(
            [
                {
                    "role": "user",
                    "content": [{"type": "audio", "audio": np.zeros(10, dtype=np.float32), "sample_rate": 16000}],
                }
            ]
        )
    with pytest.raises(ConfigError, match="max_soft_tokens"):
        mmcore.open_model(
            {"program": str(PTE), "tokenizer": str(TOKENIZER), "adapter": {"name": "gemma4", "max_soft_tokens": 99}}
        )


def test_audio_as_an_array_and_speculation_off(model):
    """Samples given as an array (16 kHz) give the WAV's ids; speculative decoding is turned off
    with a reason (the decoder returns the last row's logits only) and the ids stay the same."""
    import wave

    with wave.open(str(FIXTURE / "audio.wav"), "rb") as wf:
        samples = np.frombuffer(wf.readframes(wf.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    part = {"type": "audio", "audio": samples, "sample_rate": 16000}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": RUNS["audio"]["prompt"]}]}]
    config = mmcore.GenerationConfig(
        temperature=0.0, max_new_tokens=MAX_NEW, echo=False, speculative=SpeculativeConfig(method="ngram")
    )
    result = model.chat(messages, config)
    assert _until_stop(result.tokens) == RUNS["audio"]["generated"]
    assert "last row" in result.stats.extra["speculative"]["off"]


def test_cli_inspect_reports_the_contract(capsys):
    assert main(["inspect", str(PTE), "--tokenizer", str(TOKENIZER), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["methods"]["text_decoder"]["inputs"] == ["int64[1, 1023]", "int64[1023]", "float32[1, 1023, 32]"]
    assert report["context"]["max_context_len"] == 1024 and report["context"]["per_call"] == 1023
    assert report["adapter"]["name"] == "gemma4"
    assert "last row's logits" in report["speculative"]
    assert "greedy decoding below Python" not in report["execution"]


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_the_example_runner_run_live_gives_mmcores_ids(model, kind, monkeypatch):
    """`run_gemma4.py`'s own functions (its image preprocessing, its audio pipeline through the
    program's `speech_transform`, its prompt assembly and greedy loop) run here through
    `executorch.runtime` on the committed program: the same prompt ids and tokens as mmcore's."""
    pytest.importorskip("executorch.runtime")
    pytest.importorskip("sentencepiece")
    import importlib.util

    from executorch.examples.models.gemma4 import run_gemma4

    spec = importlib.util.spec_from_file_location("gemma4_make_fixture", FIXTURE / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    make_fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fixture)
    tokens = REFERENCE["tokens"]
    for name, value in {
        "BOS_TOKEN_ID": tokens["bos"],
        "TURN_START_ID": tokens["turn"],
        "TURN_END_ID": tokens["turn_end"],
        "AUDIO_TOKEN_ID": tokens["audio"],
        "IMAGE_TOKEN_ID": tokens["image"],
        "BOI_TOKEN_ID": tokens["boi"],
        "EOI_TOKEN_ID": tokens["eoi"],
        "STOP_TOKENS": STOP,
    }.items():
        monkeypatch.setattr(run_gemma4, name, value)
    image = FIXTURE / "image.png" if kind == "image" else None
    audio = FIXTURE / "audio.wav" if kind == "audio" else None
    live = make_fixture.reference_run(PTE, TOKENIZER, RUNS[kind]["prompt"], image, audio)
    messages = _message(None if kind == "text" else kind)
    assert live["prompt_ids"] == model.render(messages).ids == RUNS[kind]["prompt_ids"]
    assert live["generated"] == _until_stop(model.chat(messages, GREEDY).tokens) == RUNS[kind]["generated"]


def test_runner_without_adapter_needs_the_placeholder_id(model):
    """`MultimodalRunner` on the program alone: token ids run; embeddings need the media id (a typed
    error names the fix), and setting it after loading gives the adapter's ids."""
    runner = mmcore.MultimodalRunner(PTE, TOKENIZER)
    text = runner.generate([TokensInput(RUNS["text"]["prompt_ids"])], GREEDY)
    assert _until_stop(text.tokens) == RUNS["text"]["generated"]
    inputs = model.renderer.render(_message("image"))
    runner.reset()
    with pytest.raises(InvalidInputError, match="media_token_id"):
        runner.generate(inputs, GREEDY)
    runner.media_token_id = REFERENCE["tokens"]["image"]
    assert _until_stop(runner.generate(inputs, GREEDY).tokens) == RUNS["image"]["generated"]
