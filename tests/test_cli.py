"""The `mmcore` command: ordered inputs, streaming and JSON output, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmcore import GenerationConfig, TokensInput
from mmcore.cli import main
from mmcore.runner import MultimodalRunner, TextLLMRunner

STATS_KEYS = [
    "prefill_token_per_sec",
    "decode_token_per_sec",
    "prompt_tokens",
    "generated_tokens",
    "model_load_start_ms",
    "model_load_end_ms",
    "inference_start_ms",
    "inference_end_ms",
    "model_execution_start_ms",
    "model_execution_end_ms",
    "prompt_eval_end_ms",
    "first_token_ms",
    "aggregate_sampling_time_ms",
    "aggregate_model_execution_time_ms",
    "SCALING_FACTOR_UNITS_PER_SECOND",
]


@pytest.fixture
def multimodal_pte(make_spec, program_path):
    return program_path(make_spec())


def run_json(capsys, *args: str) -> dict:
    assert main(["run", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inputs_are_prefilled_in_command_line_order(capsys, multimodal_pte, tokenizer_dir, plugin_manager):
    out = run_json(
        capsys,
        str(multimodal_pte),
        "--tokenizer",
        str(tokenizer_dir),
        "--tokens",
        "0,5,6",
        "--text",
        "the quick brown fox",
        "--tokens",
        "7,8",
        "--max-new-tokens",
        "9",
    )
    runner = MultimodalRunner(multimodal_pte, tokenizer_dir, plugin_manager=plugin_manager)
    expected = runner.generate(
        [TokensInput([0, 5, 6]), "the quick brown fox", TokensInput([7, 8])],
        GenerationConfig(echo=False, temperature=0.0, max_new_tokens=9),
    )
    assert out["tokens"] == expected.tokens and out["text"] == expected.text
    assert [k for k in out["stats"] if k in STATS_KEYS] == [k for k in STATS_KEYS if k in out["stats"]]
    assert set(STATS_KEYS) - {"prefill_token_per_sec", "decode_token_per_sec"} <= set(out["stats"])
    assert out["stats"]["generated_tokens"] == 8 and out["stats"]["aggregate_model_execution_time_ms"] >= 0


def test_text_program_and_streaming_output(capsys, make_spec, program_path, tokenizer_dir, plugin_manager):
    pte = program_path(make_spec(kind="text"))
    assert (
        main(
            [
                "run",
                str(pte),
                "--tokenizer",
                str(tokenizer_dir),
                "--text",
                "the quick",
                "--num-bos",
                "1",
                "--max-new-tokens",
                "6",
                "--echo",
            ]
        )
        == 0
    )
    streamed = capsys.readouterr().out
    runner = TextLLMRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    result = runner.generate("the quick", GenerationConfig(echo=False, temperature=0.0, max_new_tokens=6, num_bos=1))
    assert streamed == "the quick" + result.text + "\n"


def test_sampling_flags_with_a_seed_are_reproducible(capsys, multimodal_pte, tokenizer_dir):
    args = [
        str(multimodal_pte),
        "--tokenizer",
        str(tokenizer_dir),
        "--text",
        "the quick",
        "--temperature",
        "1.2",
        "--top-k",
        "40",
        "--top-p",
        "0.95",
        "--seed",
        "11",
        "--max-new-tokens",
        "12",
    ]
    assert run_json(capsys, *args)["tokens"] == run_json(capsys, *args)["tokens"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tokens", "1,2", "--temperature", "-1"], "temperature"),
        (["--tokens", "1,2", "--max-new-tokens", "0"], "max_new_tokens"),
        (["--tokens", "99999"], "outside the model's vocabulary"),
        (["--text", "word " * 200], "context holds 128"),
    ],
)
def test_errors_print_one_line_and_exit_1(capsys, multimodal_pte, tokenizer_dir, args, message):
    assert main(["run", str(multimodal_pte), "--tokenizer", str(tokenizer_dir), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmcore: error:") and message in err[0]


def test_usage_errors_exit_2(capsys, multimodal_pte, tokenizer_dir):
    with pytest.raises(SystemExit) as no_input:
        main(["run", str(multimodal_pte), "--tokenizer", str(tokenizer_dir)])
    assert no_input.value.code == 2
    with pytest.raises(SystemExit) as bad_tokens:
        main(["run", str(multimodal_pte), "--tokenizer", str(tokenizer_dir), "--tokens", "a,b"])
    assert bad_tokens.value.code == 2
    assert "comma-separated token ids" in capsys.readouterr().err


def test_plugins_listing(capsys):
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listed["text"]["modalities"] == ["text"] and "str" in listed["text"]["input_types"]


def test_command_line_entry_point_runs_the_demo():
    proc = subprocess.run(
        [sys.executable, "-m", "mmcore", "demo", "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == "a red circle and a high tone"


def _base(pte, tokenizer_dir) -> list[str]:
    return ["run", str(pte), "--tokenizer", str(tokenizer_dir), "--tokens", "0,10,11,12,13"]


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mmcore {metadata.version('mmcore')}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_subcommand_shows_the_traceback(capsys, multimodal_pte, tokenizer_dir, where):
    from mmcore.errors import ConfigError

    args = [*_base(multimodal_pte, tokenizer_dir), "--temperature", "-1"]
    assert main(args) == 1  # without --debug: one line
    assert capsys.readouterr().err.startswith("mmcore: error:")
    with pytest.raises(ConfigError, match="temperature"):
        main(["--debug", *args] if where == "before" else [*args, "--debug"])


def test_penalties_logprobs_and_finish_reason(capsys, multimodal_pte, tokenizer_dir, plugin_manager):
    flags = ["--repetition-penalty", "1.7", "--frequency-penalty", "0.4", "--presence-penalty", "0.9"]
    out = run_json(capsys, *_base(multimodal_pte, tokenizer_dir)[1:], *flags, "--max-new-tokens", "10", "--logprobs")
    runner = MultimodalRunner(multimodal_pte, tokenizer_dir, plugin_manager=plugin_manager)
    config = GenerationConfig(
        echo=False, temperature=0.0, max_new_tokens=10, logprobs=True,
        repetition_penalty=1.7, frequency_penalty=0.4, presence_penalty=0.9,
    )  # fmt: skip
    expected = runner.generate([TokensInput([0, 10, 11, 12, 13])], config)
    plain = runner.generate([TokensInput([0, 10, 11, 12, 13])], config.replace(
        repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0))  # fmt: skip
    assert out["tokens"] == expected.tokens != plain.tokens  # the penalties reached the sampler
    assert out["logprobs"] == pytest.approx(expected.logprobs) and len(out["logprobs"]) == len(out["tokens"])
    assert all(lp <= 0 for lp in out["logprobs"])
    assert out["finish_reason"] == "length" and expected.stop_reason == "length"

    # A stop string ends the answer: OpenAI's "stop" (mmcore's stop_reason "stop_string").
    stop = expected.text[3:6]
    assert stop.strip()
    stopped = run_json(capsys, *_base(multimodal_pte, tokenizer_dir)[1:], "--max-new-tokens", "10", "--stop", stop)
    assert stopped["finish_reason"] == "stop" and stopped["text"] == expected.text[:3]


def test_no_echo_overrides_the_config_file(capsys, tmp_path, make_spec, program_path, tokenizer_dir):
    pte = program_path(make_spec(kind="text"))
    config = tmp_path / "echo.toml"
    toml = f'program = "{pte}"\ntokenizer = "{tokenizer_dir}"\n\n[generation]\necho = true\nmax_new_tokens = 4\n'
    config.write_text(toml)
    assert main(["run", "--config", str(config), "--text", "the quick"]) == 0
    echoed = capsys.readouterr().out
    assert echoed.startswith("the quick")
    assert main(["run", "--config", str(config), "--text", "the quick", "--no-echo"]) == 0
    assert capsys.readouterr().out == echoed.removeprefix("the quick")


# -- structured output (#16): random weights, so an unconstrained answer is never of the shape ----
SCHEMA = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["color", "n"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}
DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-[0-3][0-9]"
LARK = 'start: GREETING " " NAME\nGREETING: "hello" | "hi"\nNAME: /[a-z]{1,6}/\n'
GBNF = 'root ::= ("yes" | "no") " " [0-9] [0-9]?\n'


@pytest.mark.parametrize(
    ("flag", "make_value", "response_format", "check"),
    [
        ("--json-schema", lambda tmp: tmp / "answer.json", {"type": "json_schema", "json_schema": {"schema": SCHEMA}},
         "schema"),
        ("--regex", lambda tmp: DATE, {"type": "regex", "regex": DATE}, DATE),
        ("--grammar", lambda tmp: tmp / "greeting.lark", {"type": "grammar", "grammar": LARK},
         r"(hello|hi) [a-z]{1,6}"),
        ("--grammar", lambda tmp: tmp / "answer.gbnf", {"type": "grammar", "grammar": GBNF, "syntax": "gbnf"},
         r"(yes|no) [0-9][0-9]?"),
    ],
    ids=["json-schema", "regex", "grammar-lark", "grammar-gbnf"],
)  # fmt: skip
def test_structured_output_flags(
    capsys, tmp_path, multimodal_pte, tokenizer_dir, plugin_manager, flag, make_value, response_format, check
):
    import re

    import jsonschema

    value = make_value(tmp_path)
    if flag != "--regex":
        text = json.dumps(SCHEMA) if flag == "--json-schema" else response_format["grammar"]
        value.write_text(text)
    base = _base(multimodal_pte, tokenizer_dir)[1:]
    out = run_json(capsys, *base, flag, str(value), "--max-new-tokens", "64")
    assert out["incomplete"] is False and out["finish_reason"] == "stop"
    if check == "schema":
        jsonschema.validate(json.loads(out["text"]), SCHEMA)
    else:
        assert re.fullmatch(check, out["text"]), out["text"]
    runner = MultimodalRunner(multimodal_pte, tokenizer_dir, plugin_manager=plugin_manager)
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=64, response_format=response_format)
    assert out["tokens"] == runner.generate([TokensInput([0, 10, 11, 12, 13])], config).tokens
    unconstrained = runner.generate([TokensInput([0, 10, 11, 12, 13])], config.replace(response_format=None))
    assert unconstrained.text != out["text"]


def test_structured_output_from_the_config_file(capsys, tmp_path, multimodal_pte, tokenizer_dir):
    import re

    config = tmp_path / "date.toml"
    config.write_text(
        f'program = "{multimodal_pte}"\ntokenizer = "{tokenizer_dir}"\n\n[generation]\n'
        f"max_new_tokens = 64\nresponse_format = {{type = \"regex\", regex = '{DATE}'}}\n"
    )
    assert main(["run", "--config", str(config), "--tokens", "0,10,11,12,13", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert re.fullmatch(DATE, out["text"]) and out["incomplete"] is False
    assert main(["run", "--config", str(config), "--tokens", "0,10,11,12,13", "--max-new-tokens", "3", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)  # the budget ran out first
    assert short["finish_reason"] == "length" and short["incomplete"] is True and not re.fullmatch(DATE, short["text"])


def test_structured_output_flag_errors(capsys, tmp_path, multimodal_pte, tokenizer_dir):
    base = _base(multimodal_pte, tokenizer_dir)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for args, message in [
        (["--json-schema", str(tmp_path / "missing.json")], "cannot read the --json-schema file"),
        (["--json-schema", str(broken)], "is not valid JSON"),
        (["--regex", "[0-9]", "--grammar", str(broken)], "not allowed with argument"),
    ]:
        with pytest.raises(SystemExit) as usage:
            main([*base, *args])
        assert usage.value.code == 2 and message in capsys.readouterr().err
    unsupported = tmp_path / "unsupported.json"
    unsupported.write_text(json.dumps({"type": "string", "format": "no-such-format"}))
    assert main([*base, "--json-schema", str(unsupported)]) == 1  # the library rejects it before decoding
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmcore: error:")
    endless = tmp_path / "endless.lark"
    endless.write_text('start: "a" start\n')
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"type": "string", "minLength": 3, "maxLength": 1}))
    for args, message in [
        (["--grammar", str(endless)], "rule 'start' never derives a finite string"),
        (["--regex", "[^\\s\\S]"], "matches no text at all"),
        (["--json-schema", str(empty)], "Unsatisfiable schema"),
    ]:
        assert main([*base, *args]) == 1  # refused before any decoding
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mmcore: error:") and message in err[0], err


# -- start-up: the light commands import no torch and no program runtime -------------------------
_RUNTIME = ("torch", "executorch", "mmcore._native", "mmcore.runner", "mmcore.decoder", "mmcore.prefill",
            "mmcore.generate", "mmcore.session")  # fmt: skip


@pytest.mark.parametrize("command", [["--help"], ["plugins"], ["plugins", "--json"], ["config", "schema"]])
def test_light_commands_import_no_torch_and_no_program_runtime(command):
    script = (
        "import json, sys\n"
        "from mmcore.cli import main\n"
        "try:\n"
        f"    code = main({command!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == 0 and proc.stdout
    loaded = [m for m in report["modules"] if any(m == r or m.startswith(r + ".") for r in _RUNTIME)]
    assert loaded == []


def test_the_public_api_is_imported_on_first_use():
    script = (
        "import json, sys\n"
        "import mmcore\n"
        "light = sorted(m for m in sys.modules if m.startswith(('torch', 'executorch', 'mmcore.')))\n"
        "from mmcore import MultimodalRunner, Session, GenerationConfig\n"
        "from mmcore.runner import MultimodalRunner as direct\n"
        "names = [name for name in mmcore.__all__ if getattr(mmcore, name) is not None]\n"
        "print(json.dumps({'light': light, 'same': MultimodalRunner is direct, 'names': names,\n"
        "                  'dir': sorted(set(mmcore.__all__) - set(dir(mmcore)))}))\n"
    )  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(proc.stdout)
    assert report["light"] == ["mmcore._lazy", "mmcore.errors", "mmcore.hookspecs"]  # nothing else
    assert report["same"] and report["dir"] == []
    import mmcore

    assert report["names"] == mmcore.__all__  # every public name resolves
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        mmcore.NoSuchThing  # noqa: B018
