"""`mmcore serve` against live servers on 127.0.0.1 and a free port, through the official `openai`
client (sync and async, streaming and not) and plain HTTP: answers equal `mmcore run`'s for the
same request, prefix reuse across turns, parallel slots, disconnects and every error answer."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import mmcore
from mmcore.testing import (
    AudioEncoderSpec,
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_tokenizer,
    photo_like,
    tokenizer_vocab_size,
)
from mmcore.testing.live import LiveServer

openai = pytest.importorskip("openai", reason="the server tests need the openai client (pip install 'mmcore[test]')")
pytest.importorskip("mmcore_image", reason="the media tests need mmcore-image (bash scripts/setup.sh --dev)")
pytest.importorskip("mmcore_audio", reason="the media tests need mmcore-audio (bash scripts/setup.sh --dev)")

MAX_TOKENS = 10
TIMEOUT = 120  # seconds: generous for a loaded machine


# ---- programs, media, servers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Path:
    return build_tokenizer()


@pytest.fixture(scope="module")
def program(tokenizer: Path) -> Path:
    """A tiny program with an image and an audio encoder (128 positions of context)."""
    spec = ProgramSpec(
        DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), vision=VisionEncoderSpec(), audio=AudioEncoderSpec()
    )
    return build_program(spec)


@pytest.fixture(scope="module")
def long_program(tokenizer: Path) -> Path:
    """The tiny decoder with 2048 positions, for answers long enough to walk away from."""
    spec = ProgramSpec(DecoderSpec(vocab_size=tokenizer_vocab_size(tokenizer), max_context_len=2048, max_seq_len=64))
    return build_program(spec)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import soundfile

    folder = tmp_path_factory.mktemp("media")
    photo_like(40, 30, seed=3).save(folder / "photo.png")
    t = np.arange(int(0.3 * 16000)) / 16000
    soundfile.write(folder / "tone.wav", 0.4 * np.sin(2 * np.pi * 440 * t), 16000)
    (folder / "broken.png").write_bytes(b"not a png at all")
    return {"image": folder / "photo.png", "audio": folder / "tone.wav", "broken": folder / "broken.png"}


@pytest.fixture(scope="module")
def server(program: Path, tokenizer: Path) -> Iterator[LiveServer]:
    """The module's server: two slots."""
    live = LiveServer([str(program), "--tokenizer", str(tokenizer), "--parallel", "2", "--model-id", "tiny"])
    yield live
    assert live.stop() == 0, "".join(live.log)


def client(server: LiveServer, timeout: float = TIMEOUT) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=timeout)


def aclient(server: LiveServer) -> Any:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def content_of(kind: str, media: dict[str, Path], text: str = "what is it") -> Any:
    """The message content of a `kind` request, and the `mmcore run` flags of the same request."""
    if kind == "text":
        return text
    if kind == "image":
        return [{"type": "image_url", "image_url": {"url": data_uri(media["image"])}}, {"type": "text", "text": text}]
    audio = base64.b64encode(media["audio"].read_bytes()).decode()
    return [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}, {"type": "text", "text": text}]


def run_flags(kind: str, media: dict[str, Path], text: str = "what is it") -> list[str]:
    return ([] if kind == "text" else [f"--{kind}", str(media[kind])]) + ["--text", text]


_RUN_CACHE: dict[tuple[str, ...], str] = {}


def mmcore_run(program: Path, tokenizer: Path, flags: list[str], max_tokens: int = MAX_TOKENS) -> str:
    """The text `mmcore run` prints for the same request (greedy, `max_tokens`)."""
    key = (str(program), *flags, str(max_tokens))
    if key not in _RUN_CACHE:
        command = [sys.executable, "-m", "mmcore", "run", str(program), "--tokenizer", str(tokenizer), *flags,
                   "--max-new-tokens", str(max_tokens), "--json"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=True)
        _RUN_CACHE[key] = json.loads(done.stdout)["text"]
    return _RUN_CACHE[key]


def metric(server: LiveServer, name: str) -> float:
    """A metric's value (summed over its labels) from ``GET /metrics``."""
    text = httpx.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.MULTILINE)]
    assert values, f"no {name} in /metrics"
    return sum(values)


def wait_until_idle(server: LiveServer, timeout: float = 10) -> float:
    """Seconds until no slot is busy."""
    start = time.perf_counter()
    while metric(server, "mmcore_busy_slots") > 0:
        assert time.perf_counter() - start < timeout, "a slot stayed busy"
        time.sleep(0.02)
    return time.perf_counter() - start


# ---- answers equal `mmcore run`'s -----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_sync_client_answers_as_mmcore_run(
    server: LiveServer, program: Path, tokenizer: Path, media: dict[str, Path], kind: str, stream: bool
) -> None:
    expected = mmcore_run(program, tokenizer, run_flags(kind, media))
    request: dict[str, Any] = {
        "model": "tiny", "messages": [{"role": "user", "content": content_of(kind, media)}],
        "temperature": 0, "max_tokens": MAX_TOKENS,
    }  # fmt: skip
    if not stream:
        reply = client(server).chat.completions.create(**request)
        assert reply.choices[0].message.content == expected
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == MAX_TOKENS
        return
    chunks = list(
        client(server).chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == MAX_TOKENS


@pytest.mark.parametrize("kind", ["text", "image", "audio"])
def test_async_client_answers_as_mmcore_run(
    server: LiveServer, program: Path, tokenizer: Path, media: dict[str, Path], kind: str
) -> None:
    expected = mmcore_run(program, tokenizer, run_flags(kind, media))
    messages = [{"role": "user", "content": content_of(kind, media)}]

    async def both() -> tuple[str, str]:
        api = aclient(server)
        whole = await api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=MAX_TOKENS)
        stream = await api.chat.completions.create(
            model="tiny", messages=messages, temperature=0, max_tokens=MAX_TOKENS, stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        await api.close()
        return whole.choices[0].message.content, "".join(pieces)

    assert asyncio.run(both()) == (expected, expected)


def test_text_completion_answers_as_mmcore_run(server: LiveServer, program: Path, tokenizer: Path) -> None:
    expected = mmcore_run(program, tokenizer, ["--text", "once upon a time"])
    reply = client(server).completions.create(model="tiny", prompt="once upon a time", temperature=0,
                                              max_tokens=MAX_TOKENS)  # fmt: skip
    assert reply.choices[0].text == expected
    streamed = client(server).completions.create(
        model="tiny", prompt="once upon a time", temperature=0, max_tokens=MAX_TOKENS, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected


def test_models_health_and_metrics(server: LiveServer) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert httpx.get(f"{server.url}/health", timeout=TIMEOUT).json()["status"] == "ok"
    text = httpx.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    for name in ("mmcore_time_to_first_token_seconds_bucket", "mmcore_time_per_output_token_seconds_bucket",
                 "mmcore_queue_depth", "mmcore_prompt_tokens_total", "mmcore_cached_prompt_tokens_total",
                 "mmcore_generated_tokens_total", "mmcore_requests_total"):  # fmt: skip
        assert name in text, name


# ---- prefix caching ---------------------------------------------------------------------------


@pytest.mark.slow  # starts a server of its own
def test_second_turn_reuses_the_first_and_answers_as_a_fresh_server(
    server: LiveServer, program: Path, tokenizer: Path, media: dict[str, Path]
) -> None:
    api = client(server)
    turn1 = [{"role": "user", "content": content_of("image", media, "a photo")}]
    first = api.chat.completions.create(model="tiny", messages=turn1, temperature=0, max_tokens=6,
                                        extra_body={"session_id": "multi-turn"})  # fmt: skip
    turn2 = [*turn1, {"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": "and then"}]  # fmt: skip
    second = api.chat.completions.create(model="tiny", messages=turn2, temperature=0, max_tokens=6,
                                         extra_headers={"X-Session-ID": "multi-turn"})  # fmt: skip
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    assert second.usage.prompt_tokens > first.usage.prompt_tokens

    with LiveServer([str(program), "--tokenizer", str(tokenizer), "--model-id", "tiny"]) as fresh:
        again = client(fresh).chat.completions.create(model="tiny", messages=turn2, temperature=0, max_tokens=6)
    assert again.usage.prompt_tokens_details.cached_tokens == 0
    assert again.choices[0].message.content == second.choices[0].message.content
    assert again.usage.prompt_tokens == second.usage.prompt_tokens


# ---- parallel slots ---------------------------------------------------------------------------


def test_eight_streaming_clients_on_two_slots_get_their_answers(
    server: LiveServer, program: Path, tokenizer: Path
) -> None:
    prompts = [
        f"client {i} asks about the {word}" for i, word in enumerate("cat dog sun sea red ball tree bird".split())
    ]
    model = mmcore.open_model(program, tokenizer=tokenizer)
    greedy = model.runner.generation_config.replace(temperature=0.0, max_new_tokens=MAX_TOKENS, echo=False)
    expected = [model.chat([{"role": "user", "content": p}], greedy).text for p in prompts]

    async def ask(api: Any, prompt: str) -> str:
        stream = await api.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=MAX_TOKENS,
            stream=True,
        )  # fmt: skip
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    async def everyone() -> list[str]:
        api = aclient(server)
        try:
            return list(await asyncio.gather(*(ask(api, p) for p in prompts)))
        finally:
            await api.close()

    assert asyncio.run(everyone()) == expected
    assert len(set(expected)) > 1  # the prompts do lead to different answers


# ---- disconnects and timeouts -----------------------------------------------------------------


@pytest.fixture(scope="module")
def one_slot(long_program: Path, tokenizer: Path) -> Iterator[LiveServer]:
    """One slot on a program with a long context, and room for one waiting request."""
    live = LiveServer([str(long_program), "--tokenizer", str(tokenizer), "--max-queue", "1", "--model-id", "long"])
    yield live
    assert live.stop() == 0, "".join(live.log)


LONG = {"model": "long", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 1900, "ignore_eos": True}


def long_answer(api: Any, **changes: Any) -> Any:
    """A chat completion of `LONG` (`ignore_eos` is mmcore's extension: an extra body field)."""
    body = {**LONG, **changes}
    return api.chat.completions.create(extra_body={"ignore_eos": body.pop("ignore_eos")}, **body)


@pytest.mark.slow  # long answers
def test_a_client_leaving_mid_stream_stops_its_generation_and_frees_the_slot(one_slot: LiveServer) -> None:
    before = metric(one_slot, "mmcore_generated_tokens_total")
    start = time.perf_counter()
    with httpx.stream("POST", f"{one_slot.url}/v1/chat/completions", json={**LONG, "stream": True},
                      timeout=TIMEOUT) as answer:  # fmt: skip
        lines = answer.iter_lines()
        pieces: list[str] = []
        for line in lines:
            if line.startswith("data:") and json.loads(line[5:])["choices"][0]["delta"].get("content"):
                pieces.append(line)
                if len(pieces) == 3:
                    break
    left = time.perf_counter() - start
    wait_until_idle(one_slot)
    generated = metric(one_slot, "mmcore_generated_tokens_total") - before
    print(f"left after {left:.3f} s; {generated} tokens generated")
    assert 3 <= generated < 300, generated  # 1900 tokens take seconds: it stopped as the client left
    assert left < 5
    assert long_answer(client(one_slot), max_tokens=4).usage.completion_tokens == 4


@pytest.mark.slow  # long answers
def test_a_client_timing_out_stops_a_whole_answer_and_frees_the_slot(one_slot: LiveServer) -> None:
    before = metric(one_slot, "mmcore_generated_tokens_total")
    impatient = client(one_slot, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        long_answer(impatient)
    wait_until_idle(one_slot)
    generated = metric(one_slot, "mmcore_generated_tokens_total") - before
    print(f"{generated} tokens generated")
    assert generated < 1000, generated  # 1900 tokens take seconds: it stopped as the client gave up
    assert long_answer(client(one_slot), max_tokens=4).usage.completion_tokens == 4


@pytest.mark.slow  # a server of its own, long answers
def test_the_request_timeout_stops_generation_answers_504_and_the_server_goes_on(
    long_program: Path, tokenizer: Path
) -> None:
    limit = 0.5
    args = [str(long_program), "--tokenizer", str(tokenizer), "--model-id", "long", "--request-timeout", str(limit)]
    with LiveServer(args) as live:
        api = client(live)
        # a whole answer: a 504 in OpenAI's envelope, soon after the limit
        start = time.perf_counter()
        with pytest.raises(openai.APIStatusError) as whole:
            long_answer(api)
        took = time.perf_counter() - start
        assert whole.value.status_code == 504 and whole.value.body["code"] == "request_timeout", whole.value.body
        assert limit <= took < limit + 5, took  # 1900 tokens take far longer: it stopped at the limit
        # a stream: content, then a last error event and [DONE]
        with httpx.stream("POST", f"{live.url}/v1/chat/completions", json={**LONG, "stream": True},
                          timeout=TIMEOUT) as answer:  # fmt: skip
            events = [line[5:].strip() for line in answer.iter_lines() if line.startswith("data:")]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "request_timeout"
        assert any(json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2])
        with pytest.raises(openai.APIError, match="request timeout"):  # the openai client raises it
            for _ in long_answer(api, stream=True):
                pass
        # two at once on one slot: the second's wait counts too, both end near the limit
        async def two() -> list[int]:
            async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
                answers = await asyncio.gather(*(http.post("/v1/chat/completions", json=LONG) for _ in range(2)))
            return [a.status_code for a in answers]

        start = time.perf_counter()
        assert asyncio.run(two()) == [504, 504]
        assert time.perf_counter() - start < limit + 5
        wait_until_idle(live)
        assert metric(live, "mmcore_request_timeouts_total") == 5
        assert long_answer(api, max_tokens=4).usage.completion_tokens == 4  # the slot is free, it serves on
    assert live.process.returncode == 0, "".join(live.log)


@pytest.mark.slow  # long answers
def test_a_full_queue_answers_429_and_the_server_recovers(one_slot: LiveServer) -> None:
    async def crowd() -> list[Any]:
        async with httpx.AsyncClient(base_url=one_slot.url, timeout=TIMEOUT) as http:
            running = asyncio.ensure_future(http.post("/v1/chat/completions", json={**LONG, "max_tokens": 300}))
            while metric(one_slot, "mmcore_busy_slots") < 1:
                await asyncio.sleep(0.01)
            waiting = asyncio.ensure_future(http.post("/v1/chat/completions", json={**LONG, "max_tokens": 4}))
            while metric(one_slot, "mmcore_queue_depth") < 1:
                await asyncio.sleep(0.01)
            refused = await http.post("/v1/chat/completions", json={**LONG, "max_tokens": 4})
            return [refused, await waiting, await running]

    refused, waited, ran = asyncio.run(crowd())
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert waited.status_code == 200 and ran.status_code == 200
    assert waited.json()["usage"]["completion_tokens"] == 4


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.slow  # starts a server of its own
def test_sigterm_stops_the_server_with_exit_status_0(program: Path, tokenizer: Path) -> None:
    live = LiveServer([str(program), "--tokenizer", str(tokenizer)])
    assert client(live).models.list().data
    live.process.terminate()
    assert live.process.wait(30) == 0
    assert any("server stopped" in line for line in live.log)


def good_answer(server: LiveServer) -> None:
    """The server still answers correctly (the same greedy answer as before the error)."""
    reply = client(server).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "still there"}], temperature=0, max_tokens=4
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 4


def _parts(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(parts)}]}


BAD_REQUESTS = {
    "malformed JSON": (b'{"messages": [', 400, "invalid_json"),
    "not an object": (b"[1, 2]", 400, "invalid_json"),
    "no messages": ({"model": "tiny"}, 400, None),
    "bad temperature": ({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}, 400, None),
    "n > 1": ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "unsupported_parameter"),
    "bad role": ({"messages": [{"role": "robot", "content": "hi"}]}, 400, None),
    "unknown model": ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
    "over the context": ({"messages": [{"role": "user", "content": "word " * 400}]}, 400, "context_length_exceeded"),
    "http image": (_parts({"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}), 400, None),
    "undecodable base64": (_parts({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}), 400, None),
    "bad audio format": (_parts({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "xyz"}}), 400, None),
}  # fmt: skip


@pytest.mark.parametrize("body, status, code", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_get_openai_errors_and_the_server_goes_on(
    server: LiveServer, body: Any, status: int, code: str | None
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    for stream in (False, True):
        if stream and isinstance(body, dict):
            raw = json.dumps({**body, "stream": True}).encode()
        answer = httpx.post(f"{server.url}/v1/chat/completions", content=raw, timeout=TIMEOUT,
                            headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["type"]
        if code is not None:
            assert error["code"] == code
        assert not re.search(r" at 0x[0-9a-f]+|Traceback", error["message"]), error["message"]
    good_answer(server)


def test_a_broken_image_is_a_clear_400(server: LiveServer, media: dict[str, Path]) -> None:
    broken = [{"type": "image_url", "image_url": {"url": data_uri(media["broken"])}}, {"type": "text", "text": "hi"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client(server).chat.completions.create(model="tiny", messages=[{"role": "user", "content": broken}])
    message = refused.value.body["message"]  # type: ignore[index]
    assert "image" in message and not re.search(r"0x[0-9a-f]{6,}", message), message
    good_answer(server)


def test_unknown_routes_and_models_are_404(server: LiveServer) -> None:
    answer = httpx.get(f"{server.url}/v1/nothing", timeout=TIMEOUT)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        client(server).models.retrieve("gpt-9")
    good_answer(server)


@pytest.mark.slow  # starts a server of its own
def test_the_api_key_is_required_when_set(program: Path, tokenizer: Path) -> None:
    with LiveServer([str(program), "--tokenizer", str(tokenizer), "--api-key", "s3cret", "--model-id", "tiny"]) as live:
        for key in ("wrong", None):
            headers = {"authorization": f"Bearer {key}"} if key else {}
            answer = httpx.get(f"{live.url}/v1/models", headers=headers, timeout=TIMEOUT)
            assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            client(live).models.list()
        assert httpx.get(f"{live.url}/health", timeout=TIMEOUT).status_code == 200
        keyed = openai.OpenAI(base_url=f"{live.url}/v1", api_key="s3cret", max_retries=0, timeout=TIMEOUT)
        reply = keyed.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert reply.usage.completion_tokens == 3


@pytest.mark.slow  # starts a server of its own
def test_a_body_over_the_limit_is_413(program: Path, tokenizer: Path, tmp_path: Path) -> None:
    config = tmp_path / "mmcore.toml"
    config.write_text(f"program = {json.dumps(str(program))}\ntokenizer = {json.dumps(str(tokenizer))}\n"
                      "[serve]\nmax_body_mb = 0.01\nmodel_id = \"tiny\"\n")  # fmt: skip
    with LiveServer(["--config", str(config)]) as live:
        big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 20_000}]}
        answer = httpx.post(f"{live.url}/v1/chat/completions", json=big, timeout=TIMEOUT)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"

        def chunked() -> Iterator[bytes]:  # no content-length: the limit holds while reading
            yield json.dumps(big).encode()

        answer = httpx.post(f"{live.url}/v1/chat/completions", content=chunked(), timeout=TIMEOUT)
        assert answer.status_code == 413
        good_answer(live)


def test_an_internal_failure_is_a_500_without_a_traceback_and_the_log_has_it(
    program: Path, tokenizer: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A live server in this process, so the decoder can be made to fail."""
    import threading

    import uvicorn

    from mmcore.serve.app import create_app
    from mmcore.serve.chat import ChatService
    from mmcore.serve.cli import listening_socket
    from mmcore.testing import failing_decoder_call

    model = mmcore.open_model(program, tokenizer=tokenizer)
    sock = listening_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(ChatService(model, model_id="tiny")), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        with failing_decoder_call(model.runner, 3, "injected failure"):
            whole = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
        assert whole.status_code == 500, whole.text
        assert whole.json()["error"]["type"] == "server_error"
        assert "Traceback" not in whole.text and 'File "' not in whole.text
        logged = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
        assert logged and "injected failure" in "".join(traceback.format_exception(*logged[-1].exc_info))

        with failing_decoder_call(model.runner, 3, "injected failure"):  # after the first token: an error event
            events = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=TIMEOUT).text
        data = [line[5:].strip() for line in events.splitlines() if line.startswith("data:")]
        assert data[-1] == "[DONE]" and json.loads(data[-2])["error"]["type"] == "server_error"
        assert "Traceback" not in events

        again = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
        assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 8
    finally:
        server.should_exit = True
        thread.join(30)


def test_answers_are_not_held_back_by_nagles_algorithm() -> None:
    """The server's connections have TCP_NODELAY (without it, each answer waited ~40 ms for the
    client's delayed ACK between its headers and its body)."""
    import socket

    from mmcore.serve.cli import listening_socket

    async def accepted_nodelay() -> int:
        sock = listening_socket("127.0.0.1", 0)
        seen: list[int] = []

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        while not seen:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        return seen[0]

    assert asyncio.run(accepted_nodelay()) != 0


# ---- sampling parameters ----------------------------------------------------------------------


def test_sampling_parameters_reach_the_generation(server: LiveServer, program: Path, tokenizer: Path) -> None:
    api = client(server)
    messages = [{"role": "user", "content": "the cat sees"}]
    greedy = api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=MAX_TOKENS)
    text = greedy.choices[0].message.content
    # a stop string from the greedy answer cuts it there (and is not part of the answer)
    stop = text[4:7]
    cut = api.chat.completions.create(
        model="tiny", messages=messages, temperature=0, max_tokens=MAX_TOKENS, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == mmcore_run(program, tokenizer, ["--text", "the cat sees", "--stop", stop])
    # a seed makes sampling reproducible; another seed samples another answer
    sampled = [
        api.chat.completions.create(model="tiny", messages=messages, temperature=1.5, max_tokens=MAX_TOKENS, seed=seed)
        .choices[0].message.content
        for seed in (1, 1, 2)
    ]  # fmt: skip
    assert sampled[0] == sampled[1] != sampled[2]
    # penalties change the greedy answer of a model that repeats itself
    penalised = api.chat.completions.create(
        model="tiny", messages=messages, temperature=0, max_tokens=MAX_TOKENS, frequency_penalty=2.0,
        presence_penalty=2.0,
    )  # fmt: skip
    tokens = [t.token for t in (api.chat.completions.create(model="tiny", messages=messages, temperature=0,
              max_tokens=MAX_TOKENS, logprobs=True).choices[0].logprobs.content or [])]  # fmt: skip
    assert "".join(tokens) == text
    if len(set(tokens)) < len(tokens):  # the greedy answer repeats a token: penalties must avoid that
        assert penalised.choices[0].message.content != text
    # logprobs: one per generated token, each <= 0
    scored = api.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=4, logprobs=True)
    assert scored.choices[0].logprobs is not None
    assert len(scored.choices[0].logprobs.content) == 4 and all(
        t.logprob <= 0 for t in scored.choices[0].logprobs.content
    )


@pytest.mark.slow  # starts a server of its own
def test_generation_config_json_gives_the_defaults(program: Path, tokenizer: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pte").symlink_to(program)
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": False, "max_new_tokens": 5}))
    with LiveServer([str(folder / "model.pte"), "--tokenizer", str(tokenizer)]) as live:
        api = client(live)
        model = api.models.list().data[0].id
        assert model == "model"
        reply = api.chat.completions.create(model=model, messages=[{"role": "user", "content": "the cat sees"}])
        assert reply.usage.completion_tokens == 5  # the file's max_new_tokens
        assert reply.choices[0].message.content == mmcore_run(program, tokenizer, ["--text", "the cat sees"], 5)
        longer = api.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=7)
        assert longer.usage.completion_tokens == 7  # the request's wins


def test_speculative_flags_give_the_plain_answers_with_drafts_accepted(tokenizer: Path) -> None:
    """`--speculative draft --draft-model` (the program itself, so every draft is right) and
    `--speculative ngram`: the same text as `mmcore run` without speculation; /metrics counts drafts."""
    spec = ProgramSpec(DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), logits="all")
    program = build_program(spec)
    messages = [{"role": "user", "content": "the cat sees the dog and the cat sees"}]
    expected = mmcore_run(program, tokenizer, ["--text", messages[0]["content"]], 16)
    for flags in (["--speculative", "draft", "--draft-model", str(program)], ["--speculative", "ngram"]):
        with LiveServer([str(program), "--tokenizer", str(tokenizer), *flags]) as live:
            api = client(live)
            model = api.models.list().data[0].id
            reply = api.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0)
            assert reply.choices[0].message.content == expected, flags
            if "draft" in flags:
                proposed = metric(live, "mmcore_draft_tokens_proposed_total")
                assert proposed > 0 and metric(live, "mmcore_draft_tokens_accepted_total") == proposed


# ---- logprobs and top_logprobs ------------------------------------------------------------------


def reference_logprobs(program: Path, tokenizer: Path, ids: list[int], steps: int) -> list[np.ndarray]:
    """Log-softmax (float64) of the program's logits at each of `steps` greedy steps after `ids`,
    stepping the decoder by hand."""
    runner = mmcore.open_model(program, tokenizer=tokenizer).runner
    runner.load()
    logits = runner.decoder.prefill_ids(ids, 0, runner.metadata.max_seq_len)
    out, pos = [], len(ids)
    for _ in range(steps):
        row = np.asarray(logits, dtype=np.float64)
        out.append(row - row.max() - np.log(np.exp(row - row.max()).sum()))
        logits = runner.decoder.step_token(int(np.argmax(row)), pos).copy()
        pos += 1
    return out


def chat_prompt_ids(program: Path, tokenizer: Path, messages: list[dict[str, Any]]) -> list[int]:
    """The token ids the server prefills for a text-only chat (the adapter's rendering)."""
    model = mmcore.open_model(program, tokenizer=tokenizer)
    runner, config = model.runner, model.runner.generation_config
    runner.load()
    inputs = model.renderer.render(messages, add_generation_prompt=True)
    segments = runner.prefiller.prepare(inputs, start_pos=0, num_bos=config.num_bos, num_eos=config.num_eos,
                                        bos_id=runner.metadata.bos_id)  # fmt: skip
    return [i for segment in segments for i in segment.ids]


def check_top(entries: list[Any], reference: list[np.ndarray], k: int, text_of: Any) -> None:
    for entry, expected in zip(entries, reference, strict=True):
        tops = entry.top_logprobs
        assert len(tops) == k and [t.logprob for t in tops] == sorted((t.logprob for t in tops), reverse=True)
        best = int(np.argmax(expected))
        assert entry.token == tops[0].token == text_of(best)  # greedy: the chosen token is the top-1
        assert entry.logprob == pytest.approx(expected[best], abs=1e-4)
        order = np.argsort(-expected, kind="stable")[:k]
        assert [t.logprob for t in tops] == pytest.approx(list(expected[order]), abs=1e-4)
        assert [t.token for t in tops] == [text_of(int(i)) for i in order]
        assert all(t.bytes == list(t.token.encode()) for t in tops)


def test_chat_top_logprobs_are_the_program_logits_log_softmax(server: LiveServer, program: Path, tokenizer: Path):
    messages = [{"role": "user", "content": "the cat sees"}]
    steps, k = 5, 4
    reference = reference_logprobs(program, tokenizer, chat_prompt_ids(program, tokenizer, messages), steps)
    decode = mmcore.open_model(program, tokenizer=tokenizer).runner.tokenizer.decode
    text_of = lambda i: decode([i], skip_special_tokens=False)  # noqa: E731
    api = client(server)
    request: dict[str, Any] = {"model": "tiny", "messages": messages, "temperature": 0, "max_tokens": steps,
                               "logprobs": True, "top_logprobs": k, "extra_body": {"ignore_eos": True}}  # fmt: skip
    whole = api.chat.completions.create(**request)
    check_top(whole.choices[0].logprobs.content, reference, k, text_of)
    streamed = [c.choices[0].logprobs.content for c in api.chat.completions.create(**request, stream=True)
                if c.choices and c.choices[0].logprobs is not None]  # fmt: skip
    flat = [e for entries in streamed for e in entries]
    assert [e.token for e in flat] == [e.token for e in whole.choices[0].logprobs.content]
    check_top(flat, reference, k, text_of)
    # top_logprobs without logprobs is a 400, as OpenAI answers it
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        api.chat.completions.create(**{**request, "logprobs": False})


def test_completion_top_logprobs_stream_and_whole(server: LiveServer, program: Path, tokenizer: Path):
    decode = mmcore.open_model(program, tokenizer=tokenizer).runner.tokenizer.decode
    ids = mmcore.open_model(program, tokenizer=tokenizer).runner.tokenizer.encode("once upon a time")
    reference = reference_logprobs(program, tokenizer, ids, 4)
    api = client(server)
    request: dict[str, Any] = {"model": "tiny", "prompt": ids, "temperature": 0, "max_tokens": 4, "logprobs": 3,
                               "extra_body": {"ignore_eos": True}}  # fmt: skip
    whole = api.completions.create(**request).choices[0].logprobs
    assert whole.token_logprobs == pytest.approx([r.max() for r in reference], abs=1e-4)
    for top, expected in zip(whole.top_logprobs, reference, strict=True):
        order = np.argsort(-expected, kind="stable")[:3]
        assert top == pytest.approx({decode([int(i)], skip_special_tokens=False): expected[i] for i in order}, abs=1e-4)
    chunks = [c.choices[0].logprobs for c in api.completions.create(**request, stream=True)
              if c.choices and c.choices[0].logprobs is not None]  # fmt: skip
    # (approximately: the second request may reuse the first's cache and prefill only its last token)
    assert [t for c in chunks for t in c.token_logprobs] == pytest.approx(whole.token_logprobs, abs=1e-5)
    assert [t for c in chunks for t in c.text_offset] == whole.text_offset
