"""`mmcore batch` on this machine: Batch API lines, exactly-once output across kills, resume, errors,
and results equal to single `mmcore run` calls whatever the worker count."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

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
    wait_gone,
    write_lines,
)

from mmcore.batch import (
    BatchInputError,
    BatchOutputError,
    InlineEngine,
    ModelOptions,
    ProcessPoolEngine,
    ResultWriter,
    index_input,
    read_finished,
    run_batch,
)
from mmcore.batch.jsonl import error_line, validate_output_line
from mmcore.batch.local import assign_workers
from mmcore.cli import main
from mmcore.testing import VisionEncoderSpec


@pytest.fixture(scope="module")
def pte(make_spec, program_path):
    return program_path(make_spec(vision=VisionEncoderSpec(), decoder_max_context_len=128))


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory):
    """Greedy and seeded-sampled chat requests, an image request, a text completion."""
    lines = [chat_line(f"greedy-{i}", prompt) for i, prompt in enumerate(PROMPTS)]
    lines += [chat_line(f"seeded-{i}", prompt, temperature=1.0, top_k=40, seed=7 + i) for i, prompt in
              enumerate(PROMPTS[:3])]  # fmt: skip
    lines += [chat_line(f"unseeded-{i}", "the cat sees", temperature=1.0) for i in range(3)]
    uri, _ = png_data_uri((200, 30, 30))
    lines.append(chat_line("image", [image_part(uri), {"type": "text", "text": "what"}]))
    lines.append({"custom_id": "completion", "method": "POST", "url": "/v1/completions",
                  "body": {"prompt": "the dog", "max_tokens": 5, "temperature": 0}})  # fmt: skip
    return write_lines(tmp_path_factory.mktemp("batch") / "requests.jsonl", lines)


@pytest.fixture(scope="module")
def options(pte, tokenizer_dir, requests_file):
    return ModelOptions(str(pte), tokenizer=str(tokenizer_dir), media_dir=str(requests_file.parent))


@pytest.fixture(scope="module")
def inline_output(options, requests_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("inline") / "out.jsonl"
    result = run_batch(requests_file, out, InlineEngine(options))
    assert result.finished and result.stats.errors == 0
    return read_output(out)


def run_json(capsys, pte, tokenizer_dir, *args: str) -> dict:
    assert main(["run", str(pte), "--tokenizer", str(tokenizer_dir), *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- the input and the output file -----------------------------------------------------------------
def test_duplicate_and_missing_custom_ids_are_reported_before_work(tmp_path, pte, tokenizer_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps(chat_line("a", "x")), json.dumps(chat_line("b", "x")), json.dumps(chat_line("a", "y")),
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}), "not json", "[1, 2]", "",
    ]) + "\n")  # fmt: skip
    with pytest.raises(BatchInputError) as error:
        index_input(bad)
    message = str(error.value)
    assert "4 line(s)" in message and "line 3: custom_id 'a' repeats line 1" in message
    assert "line 4: custom_id must be a non-empty string" in message and "line 5: not valid JSON" in message
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(pte), str(bad), "-o", str(out), "--tokenizer", str(tokenizer_dir)]) == 1
    assert "custom_id 'a' repeats line 1" in capsys.readouterr().err
    assert not out.exists() or out.read_bytes() == b""  # nothing ran


def test_writer_appends_whole_lines_and_resume_cuts_a_torn_tail(tmp_path, requests_file):
    index = index_input(requests_file)
    out = tmp_path / "out.jsonl"
    with ResultWriter(out) as writer:
        writer.write(error_line("greedy-0", "x", "first"))
        writer.write(error_line("greedy-1", "x", "second"))
    whole = out.read_bytes()
    with out.open("ab") as f:  # what a kill in the middle of a write would leave
        f.write(json.dumps(error_line("greedy-2", "x", "third")).encode()[:37])
    assert sorted(read_finished(out, index)) == ["greedy-0", "greedy-1"]
    assert out.read_bytes() == whole  # the torn line is gone; appending goes on from a line start
    with ResultWriter(out) as writer:
        writer.write(error_line("greedy-2", "x", "third"))
    assert sorted(read_output(out)) == ["greedy-0", "greedy-1", "greedy-2"]
    with out.open("a") as f:
        f.write(json.dumps(error_line("someone-else", "x", "y")) + "\n")
    with pytest.raises(BatchOutputError, match="belongs to another input"):
        read_finished(out, index)


def test_output_line_format():
    line = error_line("q", "invalid_request", "bad")
    validate_output_line(line)
    assert line["response"]["status_code"] == 400 and line["error"] == {"code": "invalid_request", "message": "bad"}
    assert line["response"]["body"]["error"]["message"] == "bad"
    for broken in ({**line, "extra": 1}, {**line, "response": None, "error": None}, {**line, "error": {"code": 1}}):
        with pytest.raises(BatchOutputError):
            validate_output_line(broken)


def test_requests_sharing_a_prefix_go_to_one_worker():
    keys = ["a", None, "b", "a", None, "a", "b", "c"]
    plans = assign_workers(keys, 2)
    owner = {p: w for w, plan in enumerate(plans) for p in plan}
    assert owner[0] == owner[3] == owner[5] and owner[2] == owner[6]
    assert sorted(len(plan) for plan in plans) == [4, 4] and all(list(plan) == sorted(plan) for plan in plans)


# -- results -------------------------------------------------------------------------------------
def test_greedy_outputs_equal_single_runs(inline_output, capsys, pte, tokenizer_dir, requests_file):
    for i, prompt in enumerate(PROMPTS):
        single = run_json(capsys, pte, tokenizer_dir, "--text", prompt, "--max-new-tokens", "6")
        assert answer_of(inline_output[f"greedy-{i}"]) == (single["text"], single["tokens"])
    _, png = png_data_uri((200, 30, 30))
    photo = requests_file.parent / "photo.png"
    photo.write_bytes(png)
    single = run_json(capsys, pte, tokenizer_dir, "--image", str(photo), "--text", "what", "--max-new-tokens", "6")
    assert answer_of(inline_output["image"]) == (single["text"], single["tokens"])
    body = inline_output["greedy-0"]["response"]["body"]
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 6 and inline_output["completion"]["response"]["body"]["choices"]


def test_seeded_sampling_equals_a_seeded_single_run(inline_output, capsys, pte, tokenizer_dir):
    for i, prompt in enumerate(PROMPTS[:3]):
        single = run_json(capsys, pte, tokenizer_dir, "--text", prompt, "--max-new-tokens", "6",
                          "--temperature", "1.0", "--top-k", "40", "--seed", str(7 + i))  # fmt: skip
        assert answer_of(inline_output[f"seeded-{i}"]) == (single["text"], single["tokens"])
    unseeded = [answer_of(inline_output[f"unseeded-{i}"]) for i in range(3)]
    assert len(set(map(str, unseeded))) > 1  # a request without a seed gets its own, from its custom_id


def test_a_pool_of_two_gives_the_same_results(options, requests_file, inline_output, tmp_path):
    out = tmp_path / "pool.jsonl"
    result = run_batch(requests_file, out, ProcessPoolEngine(options, 2))
    assert result.finished and sorted(result.stats.worker_seconds) == ["worker-0", "worker-1"]
    pooled = read_output(out)
    assert {k: answer_of(v) for k, v in pooled.items()} == {k: answer_of(v) for k, v in inline_output.items()}
    rerun = run_batch(requests_file, out, ProcessPoolEngine(options, 2))
    assert rerun.stats.skipped == len(pooled) and rerun.stats.done == 0 and len(read_output(out)) == len(pooled)


def test_pool_workers_do_not_import_the_jobs_main_script(tmp_path, options, requests_file, inline_output):
    """multiprocessing re-imports the parent's main script in every child unless told otherwise; a
    job started from a script that imports torch then paid ~150 MiB per worker."""
    marks = tmp_path / "imported-by.txt"
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\n"
        f"open({str(marks)!r}, 'a').write(f'{{os.getpid()}}\\n')  # every process importing this script\n"
        "from mmcore.batch import ModelOptions, ProcessPoolEngine, run_batch\n"
        "if __name__ == '__main__':\n"
        f"    options = ModelOptions(**{dataclasses.asdict(options)!r})\n"
        "    result = run_batch(sys.argv[1], sys.argv[2], ProcessPoolEngine(options, 2))\n"
        "    assert result.finished and sorted(result.stats.worker_seconds) == ['worker-0', 'worker-1']\n"
        "    print(os.getpid())\n"
    )
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, str(script), str(requests_file), str(out)], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    assert marks.read_text().split() == [done.stdout.strip()]  # the job's process only
    assert {k: answer_of(v) for k, v in read_output(out).items()} == {k: answer_of(v) for k, v in inline_output.items()}


def test_a_worker_shrinks_executorchs_thread_pool_to_its_share(make_spec, program_path, tokenizer_dir, tmp_path):
    """N workers on C cores: each worker's kernel pool gets C // N threads, not C (the native path's
    pool, which torch.set_num_threads and the pybindings' reset never reached). In subprocesses, so
    this test process keeps its own pool."""
    pte = program_path(make_spec(backend="xnnpack", decoder_max_context_len=512))  # test_structured's program
    script = tmp_path / "threads.py"
    script.write_text(
        "import json, sys\n"
        "from mmcore import kernels\n"
        "from mmcore.batch import ModelOptions\n"
        "from mmcore.batch.jsonl import BatchRequest\n"
        "from mmcore.batch.worker import BatchWorker\n"
        "threads = int(sys.argv[1]) or None\n"
        f"worker = BatchWorker(ModelOptions({str(pte)!r}, tokenizer={str(tokenizer_dir)!r}), threads=threads)\n"
        "body = {'messages': [{'role': 'user', 'content': 'the cat sees'}], 'max_tokens': 6, 'temperature': 0}\n"
        "line = {'custom_id': 'r', 'method': 'POST', 'url': '/v1/chat/completions', 'body': body}\n"
        "answer = worker.answer(BatchRequest('r', 1, line)).line['response']['body']['choices']\n"
        "print(json.dumps([kernels.threadpool_size(), answer]))\n"
    )

    def run(threads: int) -> list:
        command = [sys.executable, str(script), str(threads)]
        return json.loads(subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout)

    (default_size, default_answer), (one_size, one_answer) = run(0), run(1)
    assert default_size == os.cpu_count() and one_size == 1
    assert one_answer == default_answer  # the same answer on one thread


def test_bad_lines_and_bad_media_are_recorded_as_errors(tmp_path, pte, tokenizer_dir):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "broken.png").write_bytes(b"not an image")
    lines = [
        chat_line("ok", "the cat sees"),
        {"custom_id": "wrong-url", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}},
        {"custom_id": "no-body", "method": "POST", "url": "/v1/chat/completions"},
        chat_line("bad-base64", [image_part("data:image/png;base64,@@@")]),
        chat_line("undecodable", [image_part("data:image/png;base64," + base64.b64encode(b"garbage").decode())]),
        chat_line("broken-file", [image_part("broken.png")]),
        chat_line("missing-file", [image_part("nowhere.png")]),
        chat_line("outside", [image_part("../requests.jsonl")]),
        chat_line("too-long", "the quick brown fox " * 60),
        chat_line("ok-after", "the river"),
    ]
    requests = write_lines(tmp_path / "requests.jsonl", lines)
    out = tmp_path / "out.jsonl"
    code = main(["batch", str(pte), str(requests), "-o", str(out), "--tokenizer", str(tokenizer_dir),
                 "--media-dir", str(tmp_path / "media"), "--quiet"])  # fmt: skip
    assert code == 0
    answers = read_output(out)
    assert sorted(answers) == sorted(line["custom_id"] for line in lines)
    assert answers["ok"]["error"] is None and answers["ok-after"]["error"] is None
    for custom_id in ("wrong-url", "no-body", "bad-base64", "undecodable", "broken-file", "missing-file", "outside",
                      "too-long"):  # fmt: skip
        line = answers[custom_id]
        assert line["error"] is not None and line["error"]["message"], custom_id
        assert 400 <= line["response"]["status_code"] < 500, (custom_id, line)
        assert line["response"]["body"]["error"]["message"] == line["error"]["message"]
        assert not re.search(r"0x[0-9a-fA-F]{6,}", line["error"]["message"]), line  # reproducible: no addresses
    assert "/v1/embeddings" in answers["wrong-url"]["error"]["message"]
    assert "media directory" in answers["outside"]["error"]["message"]


def test_bodies_are_what_a_live_mmcore_serve_returns(tmp_path, pte, tokenizer_dir):
    """The same requests, in the same order, to `mmcore batch` and to a live `mmcore serve`: equal
    bodies (ids and timestamps aside), errors included; batch adds only the token ids."""
    import httpx

    from mmcore.testing.live import LiveServer

    uri, png = png_data_uri((30, 200, 30))
    (tmp_path / "photo.png").write_bytes(png)
    lines = [
        chat_line("greedy", "the cat sees", max_tokens=8),
        chat_line("follow-up", "the cat sees the dog", max_tokens=8, stop=["zz"]),
        chat_line("sampled", "a dog likes", temperature=0.8, top_p=0.9, seed=3, logprobs=True),
        chat_line("image-path", [image_part("photo.png"), {"type": "text", "text": "what"}]),
        chat_line("image-uri", [image_part(uri), {"type": "text", "text": "what"}]),
        {"custom_id": "completion", "method": "POST", "url": "/v1/completions",
         "body": {"prompt": "the dog", "max_tokens": 5, "temperature": 0, "echo": True}},
        chat_line("missing-media", [image_part("nowhere.png")]),
        chat_line("bad-field", "x", n=2),
        chat_line("wrong-model", "x", model="gpt-4o"),
    ]  # fmt: skip
    requests = write_lines(tmp_path / "requests.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(pte), str(requests), "-o", str(out), "--tokenizer", str(tokenizer_dir), "--quiet"]) == 0
    answers = read_output(out)
    with LiveServer([str(pte), "--tokenizer", str(tokenizer_dir), "--media-dir", str(tmp_path)]) as server:
        served = [httpx.post(server.url + line["url"], json=line["body"], timeout=120) for line in lines]

    def same(body: dict) -> dict:
        return {k: v for k, v in body.items() if k not in ("id", "created", "mmcore")}

    for line, reply in zip(lines, served, strict=True):
        ours = answers[line["custom_id"]]
        assert ours["response"]["status_code"] == reply.status_code, (line["custom_id"], reply.text)
        assert same(ours["response"]["body"]) == same(reply.json()), line["custom_id"]
        if reply.status_code == 200:
            assert ours["error"] is None
            assert ours["response"]["body"]["id"].startswith(("chatcmpl-", "cmpl-"))
            assert len(ours["response"]["body"]["mmcore"]["token_ids"]) == reply.json()["usage"]["completion_tokens"]
        else:
            assert ours["error"]["message"] == reply.json()["error"]["message"]
    assert {line["custom_id"] for line in lines if answers[line["custom_id"]]["error"]} == {
        "missing-media", "bad-field", "wrong-model"}  # fmt: skip


# -- stopping and resuming -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_job(tmp_path_factory, options):
    """Enough requests that a job is still running when signalled, and their uninterrupted answers."""
    folder = tmp_path_factory.mktemp("long")
    lines = [chat_line(f"r{i}", f"{PROMPTS[i % 5]} {i}", max_tokens=48, temperature=0.9 if i % 3 else 0)
             for i in range(90)]  # fmt: skip
    requests = write_lines(folder / "requests.jsonl", lines)
    reference = folder / "reference.jsonl"
    assert run_batch(requests, reference, InlineEngine(options)).finished
    return requests, {k: answer_of(v) for k, v in read_output(reference).items()}


@pytest.mark.parametrize(("signum", "workers"), [(signal.SIGTERM, "2"), (signal.SIGKILL, "2"), (signal.SIGINT, "1")])
def test_killed_then_rerun_answers_each_request_once(long_job, tmp_path, pte, tokenizer_dir, signum, workers):
    requests, reference = long_job
    out = tmp_path / "out.jsonl"
    command = batch_command(pte, tokenizer_dir, requests, out, "--workers", workers)
    code, children = kill_part_way(command, out, signum, after_lines=5)
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert wait_gone(children) == []  # the workers do not outlive the job
    else:
        assert code == 128 + signum  # a clean stop
        assert wait_gone(children) == []
    if signum != signal.SIGKILL:
        assert out.read_bytes().endswith(b"\n")
    partial = read_finished(out)  # whole lines only (a torn tail from the kill is cut)
    assert 5 <= len(read_output(out)) == len(partial) < len(reference)
    rerun = subprocess.run([*command, "--summary-json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    final = read_output(out)
    assert sorted(final) == sorted(reference)
    assert summary["skipped"] == len(partial) and summary["remaining"] == 0
    assert {k: answer_of(v) for k, v in final.items()} == reference
