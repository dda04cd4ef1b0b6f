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
