"""`mmcore serve` numbers: ``python3 bench/serve.py [--quick]`` (results go in docs/benchmarks.md).

1. HTTP overhead: one chat completion (1 new token, prefix cache off) through a live server with the
   `openai` client, against `ChatService.chat_completion` and `ChatModel.chat` in this process;
   interleaved, medians.
2. Image conversations re-sent whole by the client each turn: time to first token of turns 2 and 3
   with prefix caching against the same server with ``--no-prefix-cache`` (a new image per
   conversation; servers interleaved).
3. Throughput: requests per second and per-token latency with 1, 2 and 4 concurrent streaming
   clients on ``--parallel 1`` and ``--parallel 2``.
4. Memory: resident and proportional set size of a server with 1, 2 and 3 slots (after every slot
   has served a request).

Servers are subprocesses on 127.0.0.1 (`mmcore.testing.live.LiveServer`); the programs are test
programs exported once: the tiny decoder (overhead), the ~50M decoder (`DecoderSpec.big()` with the
test tokenizer; throughput, memory) and, for the conversation, the same decoder with a 256-row image
encoder (a realistic image prompt: with 16 rows the turn-2 prompt is too short to show the cache).
Every section prints a markdown table and the load average it ran under.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai

import mmcore
from mmcore.serve.chat import ChatService
from mmcore.testing import (
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_tokenizer,
    photo_like,
    tokenizer_vocab_size,
)
from mmcore.testing.live import LiveServer


def program(tokenizer: Path, size: str) -> Path:
    """tiny: the test decoder; big: ~50M parameters, 16 image rows; heavy: the big decoder with an
    image encoder of 256 rows per image (Gemma 3 has 256), the realistic image prompt."""
    vocab = tokenizer_vocab_size(tokenizer)
    if size == "tiny":
        return build_program(ProgramSpec(DecoderSpec.tiny(vocab), vision=VisionEncoderSpec()))
    if size == "heavy":
        decoder = dataclasses.replace(DecoderSpec.big(), vocab_size=vocab, max_context_len=512, max_seq_len=256)
        return build_program(ProgramSpec(decoder, vision=VisionEncoderSpec(height=128, width=128, fat_channels=64)))
    decoder = dataclasses.replace(DecoderSpec.big(), vocab_size=vocab, max_context_len=512, max_seq_len=128)
    return build_program(ProgramSpec(decoder, vision=VisionEncoderSpec()))


@contextmanager
def server(pte: Path, tokenizer: Path, *flags: str) -> Iterator[LiveServer]:
    live = LiveServer([str(pte), "--tokenizer", str(tokenizer), "--model-id", "bench", *flags])
    try:
        yield live
    finally:
        live.stop()


def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=600)


def aclient(live: LiveServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=600)


def image_uri(seed: int) -> str:
    buffer = io.BytesIO()
    photo_like(64, 48, seed=seed).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# ---- 1. HTTP overhead ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_overhead(pte: Path, tokenizer: Path, rounds: int) -> None:
    body: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": "the cat sees a red ball"}],
                            "max_tokens": 1, "temperature": 0}  # fmt: skip
    model = mmcore.open_model(pte, tokenizer=tokenizer)
    service = ChatService(model, model_id="bench", prefix_cache=False)
    greedy = model.runner.generation_config.replace(temperature=0.0, max_new_tokens=1, echo=False)
    with server(pte, tokenizer, "--no-prefix-cache") as live, httpx.Client(base_url=live.url) as http:
        api = client(live)
        calls: dict[str, Callable[[], Any]] = {
            "`openai` client → `mmcore serve`": lambda: api.chat.completions.create(**body),
            "`httpx`, plain JSON → `mmcore serve`": lambda: http.post(
                "/v1/chat/completions", json=body
            ).raise_for_status(),
            "`GET /health` (an HTTP round trip, no work)": lambda: http.get("/health").raise_for_status(),
            "`ChatService.chat_completion` in process": lambda: service.chat_completion(body),
            "`ChatModel.chat` in process": lambda: model.chat(body["messages"], greedy),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():  # warm up
            call()
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        # CPU time per request: blocks of one kind (the /proc clock ticks are 10 ms), this process
        # (client, or the library in process) and the server's process (every thread) apart
        cpu: dict[str, tuple[float, float]] = {}
        for name, call in calls.items():
            here, there = time.process_time(), cpu_seconds(live.process.pid)
            for _ in range(rounds):
                call()
            cpu[name] = ((time.process_time() - here) / rounds, (cpu_seconds(live.process.pid) - there) / rounds)
    service.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["`ChatService.chat_completion` in process"]
    print(f"\n## HTTP overhead ({rounds} interleaved rounds, 1 new token, prefix cache off; {load()})\n")
    print("| path | median | overhead vs `ChatService` | CPU per request: this process | CPU: server process |")
    print("|---|---|---|---|---|")
    for name, value in medians.items():
        over = ms(value - base) if "serve" in name else "—"
        server_cpu = ms(cpu[name][1]) if "serve" in name or "health" in name else "—"
        print(f"| {name} | {ms(value)} | {over} | {ms(cpu[name][0])} | {server_cpu} |")


def load() -> str:
    """The machine's load average now (benchmarks under load must say so)."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores"


# ---- 2. multi-turn image conversation -----------------------------------------------------------


ANSWER_TOKENS = 24


def ttft(api: openai.OpenAI, messages: list[dict[str, Any]], max_tokens: int) -> tuple[float, str]:
    start = time.perf_counter()
    first = None
    text = []
    stream: Any = api.chat.completions.create(
        model="bench", messages=messages, temperature=0, max_tokens=max_tokens, stream=True,  # type: ignore[arg-type]
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter() - start
            text.append(chunk.choices[0].delta.content)
    assert first is not None
    return first, "".join(text)


def conversation(api: openai.OpenAI, seed: int, answer_tokens: int) -> list[float]:
    """TTFT of turns 1-3 of one image conversation, the client re-sending it whole each turn."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_uri(seed)}},
        {"type": "text", "text": "describe this photo of a garden with a red ball and a cat in detail"}]}]  # fmt: skip
    out = []
    for question in ("what colour is the ball", "and where is the cat sitting now", None):
        first, text = ttft(api, messages, answer_tokens)
        out.append(first)
        if question is not None:
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": question}]
    return out


def multi_turn(pte: Path, tokenizer: Path, rounds: int) -> None:
    results: dict[str, list[list[float]]] = {"prefix cache": [], "--no-prefix-cache": []}
    with server(pte, tokenizer) as cached, server(pte, tokenizer, "--no-prefix-cache") as plain:
        apis = {"prefix cache": client(cached), "--no-prefix-cache": client(plain)}
        for api in apis.values():
            conversation(api, 999, ANSWER_TOKENS)  # warm up
        for r in range(rounds):
            for name, api in apis.items():
                results[name].append(conversation(api, r, ANSWER_TOKENS))
    print(
        f"\n## Image conversation re-sent each turn ({pte.name}: 256 image rows; {rounds} conversations per "
        f"server, interleaved; {ANSWER_TOKENS}-token answers; {load()})\n"
    )
    print("| | turn 1 TTFT | turn 2 TTFT | turn 3 TTFT |\n|---|---|---|---|")
    medians = {}
    for name, runs in results.items():
        medians[name] = [statistics.median(run[i] for run in runs) for i in range(3)]
        print(f"| {name} | " + " | ".join(ms(v) for v in medians[name]) + " |")
    speedups = [medians["--no-prefix-cache"][i] / medians["prefix cache"][i] for i in (1, 2)]
    print(f"| speed-up | (same work) | {speedups[0]:.1f}x | {speedups[1]:.1f}x |")


# ---- 3. throughput --------------------------------------------------------------------------------


async def clients(live: LiveServer, n: int, requests: int, tokens: int) -> tuple[float, float]:
    """(requests per second, median per-token latency) of `n` concurrent streaming clients."""
    gaps: list[float] = []
    api = aclient(live)

    async def one(index: int) -> None:
        for r in range(requests):
            stream = await api.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": f"client {index} request {r}: tell a story"}],
                temperature=0, max_tokens=tokens, stream=True, extra_body={"ignore_eos": True},
            )  # fmt: skip
            last = None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    now = time.perf_counter()
                    if last is not None:
                        gaps.append(now - last)
                    last = now

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await api.close()
    return n * requests / elapsed, statistics.median(gaps)


def throughput(pte: Path, tokenizer: Path, requests: int, tokens: int) -> None:
    print(f"\n## Throughput ({pte.name}; {requests} requests per client, {tokens} tokens each, streamed; {load()})\n")
    print("| slots | clients | requests/s | per-token latency (median) |\n|---|---|---|---|")
    for parallel in (1, 2):
        with server(pte, tokenizer, "--parallel", str(parallel)) as live:
            asyncio.run(clients(live, parallel, 1, 4))  # warm up every slot
            for n in (1, 2, 4):
                rps, gap = asyncio.run(clients(live, n, requests, tokens))
                print(f"| {parallel} | {n} | {rps:.2f} | {ms(gap)} |")


# ---- 4. memory --------------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean", "Anonymous"):
            out[key] = int(value.split()[0])
    return out


def memory(pte: Path, tokenizer: Path) -> None:
    print(f"\n## Memory per slot (program {pte.stat().st_size / 2**20:.0f} MiB; {load()})\n")
    print("| slots | RSS | PSS | private dirty | anonymous |\n|---|---|---|---|---|")
    rows = []
    for parallel in (1, 2, 3):
        with server(pte, tokenizer, "--parallel", str(parallel)) as live:
            asyncio.run(clients(live, parallel, 1, 4))  # every slot has run
            kib = memory_kib(live.process.pid)
        rows.append(kib)
        print(f"| {parallel} | {kib['Rss'] / 1024:.0f} MiB | {kib['Pss'] / 1024:.0f} MiB | "
              f"{kib['Private_Dirty'] / 1024:.0f} MiB | {kib['Anonymous'] / 1024:.0f} MiB |")  # fmt: skip
    print()
    for key in ("Rss", "Pss", "Anonymous"):
        extra = [(rows[i + 1][key] - rows[i][key]) / 1024 for i in range(2)]
        print(f"{key.upper()} per extra slot: {extra[0]:.0f} MiB, {extra[1]:.0f} MiB")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--only", choices=["overhead", "turns", "throughput", "memory"], action="append")
    parser.add_argument("--throughput-model", choices=["tiny", "big"], default="big",
                        help="the program of the throughput runs (tiny: for a machine too busy for big)")  # fmt: skip
    args = parser.parse_args()
    tokenizer = build_tokenizer()
    tiny, big = program(tokenizer, "tiny"), program(tokenizer, "big")
    models = {"tiny": tiny, "big": big}
    rounds = 5 if args.quick else 30
    chosen = set(args.only or ["overhead", "turns", "throughput", "memory"])
    if "overhead" in chosen:
        http_overhead(tiny, tokenizer, rounds * 2)
    if "turns" in chosen:
        multi_turn(program(tokenizer, "heavy"), tokenizer, max(3, rounds // 3))
    if "throughput" in chosen:
        throughput(models[args.throughput_model], tokenizer, 2 if args.quick else 4, 16)
    if "memory" in chosen:
        memory(big, tokenizer)


if __name__ == "__main__":
    main()
