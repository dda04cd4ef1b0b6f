"""`mmcore batch --ray` on a local Ray instance started by this module (2 CPUs, one instance for
all tests: Ray starts slowly): the same answers as the in-process engine, errors recorded, and each
custom_id exactly once across a SIGTERM or SIGKILL of a job joined to the cluster and its rerun."""

from __future__ import annotations

import base64
import logging
import signal
import subprocess

import pytest
from batch_support import (
    PROMPTS,
    answer_of,
    batch_command,
    chat_line,
    image_part,
    kill_part_way,
    png_data_uri,
    read_output,
    write_lines,
)

from mmcore.batch import InlineEngine, ModelOptions, read_finished, run_batch
from mmcore.testing import VisionEncoderSpec

ray = pytest.importorskip("ray", reason="the Ray engine tests need ray[data] (pip install 'mmcore[ray]')")
pytestmark = pytest.mark.slow

from mmcore.batch.ray import RayEngine  # noqa: E402


@pytest.fixture(scope="module")
def ray_address():
    """The address of this module's Ray instance (the engines in this process use it too)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def pte(make_spec, program_path):
    return program_path(make_spec(vision=VisionEncoderSpec(), decoder_max_context_len=128))


def reference(options: ModelOptions, requests, tmp_path) -> dict:
    """Every line as the in-process engine (whose answers equal single `mmcore run` calls) writes it."""
    out = tmp_path / "reference.jsonl"
    assert run_batch(requests, out, InlineEngine(options)).stats.remaining == 0
    return read_output(out)


def comparable(line: dict) -> object:
    """What must not depend on the engine: text and token ids, or the error."""
    if line["error"] is None:
        return answer_of(line)
    return line["response"]["status_code"], line["error"]["code"], line["error"]["message"]


def test_a_quiet_ray_job_prints_nothing_on_stderr(tmp_path, pte, tokenizer_dir):
    """`--ray` starting its own local instance: none of Ray's notices (token authentication, progress
    bars off, actor restarts) reach stderr, so a quiet job is silent; runs before this module's own
    Ray instance is started."""
    lines = [chat_line(f"r{i}", f"{PROMPTS[i % 5]} {i}") for i in range(6)]
    requests = write_lines(tmp_path / "requests.jsonl", lines)
    out = tmp_path / "out.jsonl"
    command = batch_command(pte, tokenizer_dir, requests, out, "--ray", "--workers", "2", "--quiet")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert sorted(read_output(out)) == sorted(line["custom_id"] for line in lines)


def test_ray_answers_equal_the_local_engine_and_record_errors(ray_address, tmp_path, pte, tokenizer_dir):
    uri, png = png_data_uri((200, 30, 30))
    (tmp_path / "photo.png").write_bytes(png)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    lines = [chat_line(f"greedy-{i}", prompt) for i, prompt in enumerate(PROMPTS)]
    lines += [chat_line(f"seeded-{i}", p, temperature=1.0, top_k=40, seed=7 + i) for i, p in enumerate(PROMPTS[:2])]
    lines += [chat_line(f"unseeded-{i}", "the cat sees", temperature=1.0) for i in range(2)]
    lines += [
        chat_line("image-uri", [image_part(uri), {"type": "text", "text": "what"}]),
        chat_line("image-path", [image_part("photo.png"), {"type": "text", "text": "what"}]),
        {"custom_id": "completion", "method": "POST", "url": "/v1/completions",
         "body": {"prompt": "the dog", "max_tokens": 5, "temperature": 0}},
        {"custom_id": "wrong-url", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}},
        {"custom_id": "no-body", "method": "POST", "url": "/v1/chat/completions"},
        chat_line("bad-base64", [image_part("data:image/png;base64,@@@")]),
        chat_line("undecodable", [image_part("data:image/png;base64," + base64.b64encode(b"garbage").decode())]),
        chat_line("broken-file", [image_part("broken.png")]),
        chat_line("missing-file", [image_part("nowhere.png")]),
        chat_line("too-long", "the quick brown fox " * 60),
    ]  # fmt: skip
    requests = write_lines(tmp_path / "requests.jsonl", lines)
    options = ModelOptions(str(pte), tokenizer=str(tokenizer_dir), media_dir=str(tmp_path))
    out = tmp_path / "ray.jsonl"
    result = run_batch(requests, out, RayEngine(options, 2))
    assert result.finished and all(name.startswith("ray-") for name in result.stats.worker_seconds)
    answers = read_output(out)  # validates every line against the Batch API line format
    expected = reference(options, requests, tmp_path)
    assert {k: comparable(v) for k, v in answers.items()} == {k: comparable(v) for k, v in expected.items()}
    failed = {k for k, v in answers.items() if v["error"] is not None}
    assert failed == {"wrong-url", "no-body", "bad-base64", "undecodable", "broken-file", "missing-file", "too-long"}
    assert all(400 <= answers[k]["response"]["status_code"] < 500 for k in failed)
    assert result.stats.errors == len(failed)
    rerun = run_batch(requests, out, RayEngine(options, 2))
    assert rerun.stats.skipped == len(lines) and rerun.stats.done == 0


@pytest.fixture(scope="module")
def long_job(tmp_path_factory, pte, tokenizer_dir):
    folder = tmp_path_factory.mktemp("ray-long")
    lines = [chat_line(f"r{i}", f"{PROMPTS[i % 5]} {i}", max_tokens=48, temperature=0.9 if i % 3 else 0)
             for i in range(48)]  # fmt: skip
    requests = write_lines(folder / "requests.jsonl", lines)
    options = ModelOptions(str(pte), tokenizer=str(tokenizer_dir), media_dir=str(folder))
    return requests, options, {k: answer_of(v) for k, v in reference(options, requests, folder).items()}


def test_killed_ray_jobs_then_rerun_answer_each_request_once(ray_address, long_job, tmp_path, pte, tokenizer_dir):
    """SIGTERM a job joined to the cluster, SIGKILL its rerun, then finish: each custom_id once, and
    the answers of an uninterrupted run."""
    requests, options, expected = long_job
    out = tmp_path / "out.jsonl"
    command = batch_command(pte, tokenizer_dir, requests, out, "--ray", ray_address, "--workers", "2")
    code, _ = kill_part_way(command, out, signal.SIGTERM, after_lines=4)
    assert code == 128 + signal.SIGTERM
    assert out.read_bytes().endswith(b"\n")  # a clean stop: whole lines only
    stopped = read_finished(out)
    assert 4 <= len(stopped) < len(expected)
    code, _ = kill_part_way(command, out, signal.SIGKILL, after_lines=len(stopped) + 4)
    assert code == -signal.SIGKILL
    killed = read_finished(out)  # (a torn tail of the kill is cut here)
    assert set(stopped) < set(killed) and len(killed) < len(expected)
    result = run_batch(requests, out, RayEngine(options, 2, address=ray_address))
    assert result.finished and result.stats.skipped == len(killed)
    final = read_output(out)  # each custom_id once
    assert {k: answer_of(v) for k, v in final.items()} == expected
