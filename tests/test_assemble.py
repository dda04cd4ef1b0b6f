"""Config-driven assembly: TOML files, typed validation naming the TOML path, CLI --config/--set."""

from __future__ import annotations

import json

import pytest

from mmcore import ConfigError, GenerationConfig
from mmcore.assemble import assemble, config_schema, load_config
from mmcore.cli import main
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore.testing import VisionEncoderSpec


@pytest.fixture
def media_pm(plugin_manager):
    import mmcore_image

    plugin_manager.register(mmcore_image, name="image")
    return plugin_manager


def write(tmp_path, text: str):
    path = tmp_path / "mmcore.toml"
    path.write_text(text)
    return path


def test_assemble_from_toml_with_relative_paths(tmp_path, make_spec, program_path, tokenizer_dir, media_pm):
    pte = program_path(make_spec(vision=VisionEncoderSpec()))
    (tmp_path / "model.pte").symlink_to(pte)
    (tmp_path / "tok").symlink_to(tokenizer_dir)
    path = write(
        tmp_path,
        """
program = "model.pte"
tokenizer = "tok"
[image]
resample = "nearest"
[generation]
max_new_tokens = 5
temperature = 0.0
echo = false
stop = ["zz"]
""",
    )
    runner = assemble(path, plugin_manager=media_pm)
    assert isinstance(runner, MultimodalRunner)
    assert runner.modality_settings == {"image": {"resample": "nearest"}}
    assert runner.generation_config == GenerationConfig(max_new_tokens=5, temperature=0.0, echo=False, stop=("zz",))
    assert len(runner.generate(["the quick"]).tokens) <= 5  # the config's generation settings are the default


def test_text_programs_assemble_a_text_runner(make_spec, program_path, tokenizer_dir, plugin_manager):
    runner = assemble(
        {"program": str(program_path(make_spec(kind="text"))), "tokenizer": str(tokenizer_dir)},
        plugin_manager=plugin_manager,
    )
    assert isinstance(runner, TextLLMRunner)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"program": "m.pte", "progam": "x"}, r"unknown config key\(s\) \['progam'\].*accepted top-level keys"),
        ({"tokenizer": "t"}, "'program' is required"),
        ({"program": "m.pte", "generation": {"temprature": 0}}, r"generation\.temprature.*accepted.*temperature"),
        (
            {"program": "m.pte", "generation": {"temperature": -1}},
            r"generation\.temperature: .*greater than or equal to 0",
        ),
        ({"program": "m.pte", "generation": {"top_p": 2}}, r"generation\.top_p"),
        ({"program": "m.pte", "image": {"resampel": "nearest"}}, r"image\.resampel.*accepted.*resample"),
        ({"program": "m.pte", "image": "bicubic"}, r"'image' must be a table"),
        ({"program": "m.pte", "plugins": {"alow": []}}, r"plugins\.alow"),
        ({"program": "m.pte", "plugins": {"allow": "text"}}, r"plugins\.allow.*list"),
        ({"program": 3}, "'program' must be a non-empty path"),
    ],
)
def test_invalid_configs_name_the_key_and_the_accepted_values(config, message, media_pm):
    with pytest.raises(ConfigError, match=message):
        load_config(config, plugin_manager=media_pm)


def test_malformed_toml_and_missing_file(tmp_path, media_pm):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "program = "), plugin_manager=media_pm)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", plugin_manager=media_pm)


def test_schema_lists_every_key(media_pm):
    schema = config_schema(media_pm)
    assert schema["required"] == ["program"] and schema["additionalProperties"] is False
    assert {"program", "tokenizer", "plugins", "generation", "image", "text"} <= set(schema["properties"])
    temperature = schema["properties"]["generation"]["properties"]["temperature"]
    assert (temperature["type"], temperature["default"], temperature["minimum"]) == ("number", 0.8, 0)
    assert "resample" in schema["properties"]["image"]["properties"]


def test_cli_config_set_and_flag_precedence(tmp_path, capsys, make_spec, program_path, tokenizer_dir):
    pte = program_path(make_spec(vision=VisionEncoderSpec()))
    path = write(tmp_path, f'program = "{pte}"\ntokenizer = "{tokenizer_dir}"\n[generation]\nmax_new_tokens = 7\n')
    assert main(["run", "--config", str(path), "--text", "the quick", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tokens"]) == 7
    assert (
        main(
            [
                "run",
                "--config",
                str(path),
                "--text",
                "the quick",
                "--max-new-tokens",
                "3",
                "--json",
                "--set",
                "image.resample=nearest",
            ]
        )
        == 0
    )
    assert len(json.loads(capsys.readouterr().out)["tokens"]) == 3
    assert main(["run", "--config", str(path), "--text", "x", "--set", "image.resampel=nearest"]) == 1
    assert "image.resampel" in capsys.readouterr().err


def test_cli_config_schema_command(capsys):
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "mmcore runner config"
