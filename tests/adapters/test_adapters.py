"""Model adapters without Hugging Face: registry, detection, errors, ExecuTorch's LLaVA contract,
configs, the CLI and sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

import mmcore
from mmcore import hookimpl
from mmcore.adapters import MediaSpan, ModelProfile, ModelSource, RendererContext, RunnerMediaEncoder
from mmcore.chat import PlainRenderer
from mmcore.cli import main
from mmcore.errors import (
    AmbiguousAdapterError,
    ConfigError,
    MediaLimitError,
    PlaceholderMismatchError,
    PluginError,
    UnknownAdapterError,
)
from mmcore.inputs import EmbeddingsInput, TokensInput
from mmcore.plugins import PluginManager
from mmcore.registry import PrefillContext
from mmcore.runner import MultimodalRunner
from mmcore.testing import cpp_generate

BUILTIN = {"gemma3", "llava", "smolvlm", "voxtral", "executorch-llava", "generic"}
GREEDY = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=12)


class _Claims:
    """A test adapter that recognises every multimodal program."""

    description = "test adapter"
    fallback = False
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    def detect(self, source: ModelSource) -> str | None:
        return "it claims everything" if source.has_method("text_decoder") else None

    def configure(self, source: ModelSource, tokenizer: Any, options: Any) -> ModelProfile:
        return ModelProfile(adapter=self.name, make_renderer=lambda ctx: PlainRenderer(ctx.registry))


class _Plugin:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def mmcore_register_adapters(self, registry: Any) -> None:
        for name in self.names:
            registry.add(_Claims(name))


def _message(image: Any, text: str = "What is in it?") -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}


def test_builtin_adapters_are_registered_by_the_plugin():
    pm = mmcore.get_plugin_manager()
    assert BUILTIN <= set(pm.adapter_registry().names())
    assert pm.adapter_registry().plugin_of("gemma3") == "adapters"
    info = {i.name: i for i in pm.plugin_infos()}["adapters"]
    assert BUILTIN <= set(info.adapters)


def test_detection_picks_executorch_llava_and_falls_back_to_generic(
    et_llava_pte, make_spec, program_path, tokenizer_dir
):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    assert model.name == "executorch-llava" and "uint8" in model.detection.reason
    assert ("generic", model.detection.candidates[-1][1]) == model.detection.candidates[-1]
    generic = mmcore.open_model(program_path(make_spec()), tokenizer=tokenizer_dir)
    assert generic.name == "generic" and isinstance(generic.renderer, PlainRenderer)


def test_unknown_adapter_name_lists_the_installed_ones(et_llava_pte, tokenizer_dir):
    with pytest.raises(
        UnknownAdapterError, match=r"no installed adapter is called 'nope'.*executorch-llava.*--adapter"
    ):
        mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir, adapter="nope")


def test_ambiguous_detection_lists_candidates_and_how_to_choose(et_llava_pte, tokenizer_dir):
    import mmcore_adapters
    import mmcore_image
    import mmcore_text

    pm = PluginManager(entry_points=False)
    for plugin, name in ((mmcore_text, "text"), (mmcore_image, "image"), (mmcore_adapters, "adapters")):
        pm.register(plugin, name=name)
    pm.register(_Plugin("claims-all"), name="claims")
    with pytest.raises(AmbiguousAdapterError) as err:
        mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir, plugin_manager=pm)
    message = str(err.value)
    assert "executorch-llava (" in message and "claims-all (it claims everything)" in message
    assert "--adapter NAME" in message and 'adapter = "NAME"' in message
    chosen = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir, plugin_manager=pm, adapter="claims-all")
    assert chosen.name == "claims-all"


def test_duplicate_adapter_names_are_a_plugin_failure():
    pm = PluginManager(entry_points=False)
    pm.register(_Plugin("twin"), name="one")
    pm.register(_Plugin("twin"), name="two")
    assert pm.adapter_registry().names() == ["twin"]
    # pluggy calls the later-registered plugin first, so "one" is the one that collides.
    assert [f.name for f in pm.failures] == ["one"] and "already registered by plugin 'two'" in pm.failures[0].error
    with pytest.raises(PluginError, match="without"):
        pm.adapter_registry().add(object(), plugin="bad")  # type: ignore[arg-type]


def _et_pixels(model: mmcore.ChatModel, image: Path) -> np.ndarray:
    handler = model.runner._plugins().modality_registry().get("image")
    assert handler is not None
    ctx = PrefillContext(model.runner.program, model.runner.tokenizer, model.runner.modality_settings["image"])
    return handler.preprocess(handler.from_content({"type": "image", "image": str(image)}), ctx)


def test_executorch_llava_prompt_and_parity_with_the_cpp_runner(et_llava_pte, tokenizer_dir, png_100x60):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    tokenizer = model.runner.tokenizer
    messages = [_message(str(png_100x60), "What should I be careful about here?")]
    prompt = model.render(messages)
    first, span, last = prompt.parts
    assert isinstance(first, TokensInput) and isinstance(span, MediaSpan) and isinstance(last, TokensInput)
    system = mmcore_adapters_system() + " USER: "
    assert list(first.ids) == tokenizer.encode(system, bos=1)
    assert list(last.ids) == tokenizer.encode("What should I be careful about here? ASSISTANT:")
    assert span.length == 16
    pixels = _et_pixels(model, png_100x60)
    assert pixels.dtype == np.uint8 and tuple(pixels.shape) == (3, 32, 32)
    # The 100x60 picture keeps its aspect: 32x19 centred on black rows.
    assert int(pixels[:, :6].sum()) == 0 and int(pixels[:, 26:].sum()) == 0 and int(pixels[:, 10].sum()) > 0
    result = model.chat(messages, GREEDY)
    segments = [("tokens", first.ids), ("image", torch.from_numpy(pixels)), ("tokens", last.ids)]
    expected = cpp_generate(et_llava_pte, tokenizer_dir, segments, 12)
    assert result.tokens == expected


def mmcore_adapters_system() -> str:
    from mmcore_adapters import LLAVA_SYSTEM_PROMPT

    return LLAVA_SYSTEM_PROMPT


def test_more_images_than_the_model_takes(et_llava_pte, tokenizer_dir, png_100x60):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    two = {"role": "user", "content": [{"type": "image", "image": str(png_100x60)}] * 2}
    with pytest.raises(MediaLimitError, match=r"2 image items but .* at most 1"):
        model.chat([two], GREEDY)
    raised = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir, adapter_options={"max_items": 2})
    assert len(raised.chat([two], GREEDY).tokens) == 12


def test_placeholder_count_is_checked_against_the_encoder_rows(et_llava_pte, tokenizer_dir, png_100x60):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    encoder = RunnerMediaEncoder(model.runner)
    item = model.render([_message(str(png_100x60))]).media[0].item
    assert len(encoder(MediaSpan("image", item, 16), where="image 0")) == 16
    with pytest.raises(PlaceholderMismatchError, match=r"reserves 15 placeholder tokens .* produced 16 rows"):
        encoder(MediaSpan("image", item, 15), where="image 0")


def test_bound_renderer_returns_checked_embeddings(et_llava_pte, tokenizer_dir, png_100x60):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    inputs = model.inputs([_message(str(png_100x60))])
    assert [type(i) for i in inputs] == [TokensInput, EmbeddingsInput, TokensInput]
    unbound = model.profile.make_renderer(RendererContext(model.runner._plugins().modality_registry()))
    assert not isinstance(unbound.render([_message(str(png_100x60))])[1], EmbeddingsInput)


def test_session_replays_assistant_tokens(et_llava_pte, tokenizer_dir, png_100x60):
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    session = model.session()
    first = session.send(_message(str(png_100x60)), GREEDY)
    assert session.messages[-1]["tokens"] == first.tokens
    second = session.send("And the colours?", GREEDY)
    assert second.stats.extra["reused_prompt_tokens"] >= len(model.render([_message(str(png_100x60))]))
    # The history renders the first answer as its ids, never re-tokenised from text.
    replay = model.render(session.messages[:2], add_generation_prompt=False)
    flat = [i for p in replay.parts if isinstance(p, TokensInput) for i in p.ids]
    assert flat[-len(first.tokens) :] == first.tokens


def _write_config(tmp_path: Path, pte: Path, tokenizer_dir: Path, extra: str) -> Path:
    path = tmp_path / "model.toml"
    path.write_text(f'program = "{pte}"\ntokenizer = "{tokenizer_dir}"\n{extra}\n')
    return path


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        ("adapter = 3", ConfigError, "must be an adapter name"),
        ('adapter = "nope"', UnknownAdapterError, "installed adapters: .*generic"),
        ('[adapter]\nname = "executorch-llava"\nbogus = 1', ConfigError, r"adapter\.bogus .* accepts: \['max_items'"),
        ("[adapter]\nmax_items = 1", ConfigError, "needs name"),
        ('[adapter]\nname = "auto"\nmax_items = 1', ConfigError, "need a named adapter"),
    ],
)
def test_bad_adapter_keys_in_a_config(tmp_path, et_llava_pte, tokenizer_dir, extra, error, match):
    with pytest.raises(error, match=match):
        mmcore.assemble(_write_config(tmp_path, et_llava_pte, tokenizer_dir, extra))


def test_invalid_adapter_option_value(tmp_path, et_llava_pte, tokenizer_dir):
    path = _write_config(tmp_path, et_llava_pte, tokenizer_dir, '[adapter]\nname = "executorch-llava"\nmax_items = 0')
    with pytest.raises(ConfigError, match="max_items must be a positive integer, got 0"):
        mmcore.open_model(path)


def test_assemble_and_open_model_honour_the_adapter_key(tmp_path, et_llava_pte, tokenizer_dir, png_100x60):
    path = _write_config(
        tmp_path, et_llava_pte, tokenizer_dir, 'adapter = "executorch-llava"\n[image]\nresample = "nearest"'
    )
    runner = mmcore.assemble(path)
    assert isinstance(runner, MultimodalRunner)
    assert runner.modality_settings["image"] == {
        "resize_mode": "longest_edge_pad",
        "resample": "nearest",
        "fill": [0, 0, 0],
    }
    model = mmcore.open_model(path)
    assert model.name == "executorch-llava" and model.detection.reason.startswith("named")
    plain = mmcore.assemble(_write_config(tmp_path, et_llava_pte, tokenizer_dir, ""))
    assert plain.modality_settings == {}  # no adapter key: today's behaviour


def test_cli_run_renders_one_user_turn(capsys, et_llava_pte, tokenizer_dir, png_100x60):
    args = ["run", str(et_llava_pte), "--tokenizer", str(tokenizer_dir), "--image", str(png_100x60)]
    assert main([*args, "--text", "What is it?", "--max-new-tokens", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir)
    assert out["tokens"] == model.chat([_message(str(png_100x60), "What is it?")], GREEDY).tokens
    assert main([*args, "--text", "What is it?", "--max-new-tokens", "12", "--json", "--raw"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["tokens"] != out["tokens"]  # no system prompt, no template
    assert main([*args, "--adapter", "nope"]) == 1
    assert "no installed adapter is called 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--tokens", "1,2"])
    assert "add --raw" in capsys.readouterr().err


def test_cli_inspect(capsys, et_llava_pte, tokenizer_dir):
    assert main(["inspect", str(et_llava_pte), "--tokenizer", str(tokenizer_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["methods"]["vision_encoder"]["inputs"] == ["uint8[3, 32, 32]"]
    assert report["metadata"]["get_max_seq_len"] == 256
    assert report["decoder_position_input"] == "start position [1]"
    assert report["execution"].startswith("native")
    adapter = report["adapter"]
    assert adapter["name"] == "executorch-llava" and adapter["tokens_per_item"] == {"image": 16}
    assert adapter["max_items"] == {"image": 1} and adapter["items_that_fit"] == {"image": 31}
    assert main(["inspect", str(et_llava_pte), "--tokenizer", str(tokenizer_dir)]) == 0
    text = capsys.readouterr().out
    assert "adapter: executorch-llava" in text and "16 placeholder tokens per image" in text
    assert "execution: native" in text
