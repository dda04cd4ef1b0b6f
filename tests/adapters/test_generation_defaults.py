"""`open_model` takes sampling defaults and EOS ids from the model's `generation_config.json`, as
transformers does; `inspect` shows them; an explicit GenerationConfig wins; bad values are one-line
typed errors naming the file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import mmcore
from mmcore.cli import main
from mmcore.errors import ConfigError

GREEDY = mmcore.GenerationConfig(temperature=0.0, max_new_tokens=12, echo=False)


def _model_dir(tmp_path: Path, pte: Path, generation: dict[str, Any] | None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    shutil.copy(pte, folder / "model.pte")
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder / "model.pte"


def _ask() -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "the quick brown fox"}]}]


def test_sampling_defaults_come_from_the_file(tmp_path, et_llava_pte, tokenizer_dir):
    file = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1, "max_new_tokens": 7}
    model = mmcore.open_model(_model_dir(tmp_path, et_llava_pte, file), tokenizer=tokenizer_dir)
    config = model.runner.generation_config
    # top_k absent: transformers' default of 50 when sampling
    assert (config.temperature, config.top_k, config.top_p) == (0.7, 50, 0.9)
    assert (config.repetition_penalty, config.max_new_tokens) == (1.1, 7)
    assert len(model.chat(_ask()).tokens) <= 7


def test_do_sample_false_is_greedy_and_eos_ids_stop(tmp_path, et_llava_pte, tokenizer_dir):
    plain = mmcore.open_model(et_llava_pte, tokenizer=tokenizer_dir).chat(_ask(), GREEDY)
    first = plain.tokens[0]
    assert first not in plain.tokens[1:4]
    pte = _model_dir(tmp_path, et_llava_pte, {"do_sample": False, "temperature": 0.6, "eos_token_id": [first]})
    model = mmcore.open_model(pte, tokenizer=tokenizer_dir)
    assert model.runner.generation_config.temperature == 0.0
    assert first in model.runner.metadata.eos_ids
    reply = model.chat(_ask(), GREEDY)  # the explicit config keeps the model's stop tokens
    assert reply.tokens == [first]


def test_explicit_generation_config_and_toml_keys_win(tmp_path, et_llava_pte, tokenizer_dir):
    pte = _model_dir(tmp_path, et_llava_pte, {"do_sample": True, "temperature": 0.5, "max_new_tokens": 9})
    explicit = mmcore.GenerationConfig(temperature=0.0, max_new_tokens=3)
    assert mmcore.open_model(pte, tokenizer=tokenizer_dir, generation=explicit).runner.generation_config == explicit
    toml = tmp_path / "mmcore.toml"
    toml.write_text(f'program = "{pte}"\ntokenizer = "{tokenizer_dir}"\n[generation]\nmax_new_tokens = 5\n')
    config = mmcore.open_model(toml).runner.generation_config
    assert (config.temperature, config.max_new_tokens) == (0.5, 5)


@pytest.mark.parametrize(
    ("file", "match"),
    [
        ({"do_sample": True, "temperature": -1}, r"generation_config.json: temperature must be a number > 0"),
        ({"do_sample": "yes"}, r"do_sample must be true or false, got 'yes'"),
        ({"do_sample": True, "top_p": 1.5}, r"top_p must be a number in \(0, 1\]"),
        ({"do_sample": True, "top_k": 2.5}, r"top_k must be an integer, got 2.5"),
        ({"max_new_tokens": 0}, r"max_new_tokens must be a positive integer"),
        ({"repetition_penalty": 0}, r"repetition_penalty must be a number > 0"),
        ({"eos_token_id": "</s>"}, r"eos_token_id must be a token id >= 0 or a list of them"),
        ({"eos_token_id": [1, 10_000]}, r"eos_token_id \[10000\] is beyond the tokenizer's"),
    ],
)
def test_nonsense_values_are_one_line_typed_errors(tmp_path, et_llava_pte, tokenizer_dir, file, match):
    pte = _model_dir(tmp_path, et_llava_pte, file)
    with pytest.raises(ConfigError, match=match) as info:
        mmcore.open_model(pte, tokenizer=tokenizer_dir)
    message = str(info.value)
    assert "\n" not in message and "fix or remove" in message


def test_invalid_json_names_the_file(tmp_path, et_llava_pte, tokenizer_dir):
    pte = _model_dir(tmp_path, et_llava_pte, None)
    (pte.parent / "generation_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="generation_config.json is not valid JSON"):
        mmcore.open_model(pte, tokenizer=tokenizer_dir)


def test_inspect_shows_the_defaults(capsys, tmp_path, et_llava_pte, tokenizer_dir):
    pte = _model_dir(tmp_path, et_llava_pte, {"do_sample": True, "top_k": 20, "eos_token_id": 1})
    assert main(["inspect", str(pte), "--tokenizer", str(tokenizer_dir), "--json"]) == 0
    defaults = json.loads(capsys.readouterr().out)["generation_defaults"]
    assert defaults["settings"] == {"temperature": 1.0, "top_k": 20, "top_p": 1.0}
    assert defaults["eos_token_ids"] == [1]
    assert main(["inspect", str(pte), "--tokenizer", str(tokenizer_dir)]) == 0
    assert "generation defaults (" in capsys.readouterr().out
