"""Streaming iterators, cancellation, penalties, log-probabilities and the encoder cache."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

from mmcore import EmbeddingsInput, GenerationConfig, PrefillContext, hookimpl
from mmcore.encoder_cache import EncoderCache
from mmcore.runner import MultimodalRunner
from mmcore.testing import VisionEncoderSpec

GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=12)
LONG = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=60, ignore_eos=True)


@pytest.fixture
def runner(make_spec, program_path, tokenizer_dir, plugin_manager) -> MultimodalRunner:
    return MultimodalRunner(program_path(make_spec()), tokenizer_dir, plugin_manager=plugin_manager)


def test_stream_yields_the_same_tokens_and_text_as_generate(runner):
    expected = runner.generate(["the quick brown fox"], GREEDY)
    runner.reset()
    pieces = list(runner.stream(["the quick brown fox"], GREEDY))
    assert [p.token for p in pieces if p.token is not None] == expected.tokens
    assert "".join(p.text for p in pieces) == expected.text


def test_closing_the_stream_early_stops_generation_and_keeps_the_runner_usable(runner):
    stream = runner.stream(["the quick brown fox"], LONG)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert all(p.token is not None for p in first)
    assert runner.pos < 4 + 60  # it did not run to the end
    assert runner.generate(["jumps"], GREEDY).tokens


def test_async_stream_and_cancellation(runner):
    async def collect() -> list[int]:
        return [p.token async for p in runner.astream(["the quick brown fox"], GREEDY) if p.token is not None]

    expected = runner.generate(["the quick brown fox"], GREEDY).tokens
    runner.reset()
    assert asyncio.run(collect()) == expected

    async def cancel_midway() -> int:
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in runner.astream(["the quick brown fox"], LONG):
                seen += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(consume())
        while seen < 3:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    runner.reset()
    assert asyncio.run(cancel_midway()) < 60
    assert runner.generate(["jumps"], GREEDY).tokens  # usable after cancellation


def test_stream_reraises_generation_errors(runner):
    with pytest.raises(Exception, match="no tokens"):
        list(runner.stream(["hi", ""], GREEDY))


def test_repetition_and_frequency_penalties_change_repetitive_output(runner):
    plain = runner.generate(["the quick brown fox"], LONG)
    runner.reset()
    penalised = runner.generate(["the quick brown fox"], LONG.replace(repetition_penalty=3.0, frequency_penalty=2.0))
    assert penalised.tokens[0] == plain.tokens[0]  # no history yet at the first token
    assert len(set(penalised.tokens)) > len(set(plain.tokens))


def test_logprobs_are_reported_per_token(runner):
    result = runner.generate(["the quick brown fox"], GREEDY.replace(logprobs=True))
    assert result.logprobs is not None and len(result.logprobs) == len(result.tokens)
    assert all(lp <= 0 and math.isfinite(lp) for lp in result.logprobs)
    sampled = runner.generate(["the"], GREEDY.replace(logprobs=True, temperature=0.7, top_p=0.9, seed=3))
    assert sampled.logprobs is not None and all(lp <= 0 for lp in sampled.logprobs)


class Picture:
    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels


class CountingImageHandler:
    name = "picture"
    input_types = (Picture,)

    def __init__(self) -> None:
        self.encoded = 0

    def preprocess(self, item: Picture, ctx: PrefillContext) -> torch.Tensor:
        return item.pixels.unsqueeze(0)  # [1, 3, H, W]

    def prefill(self, pixels: torch.Tensor, ctx: PrefillContext) -> EmbeddingsInput:
        self.encoded += 1
        return EmbeddingsInput(ctx.program.method("vision_encoder").execute([pixels])[0])


def test_encoder_cache_skips_the_encoder_for_a_repeated_image(make_spec, program_path, tokenizer_dir, plugin_manager):
    handler = CountingImageHandler()

    class Plugin:
        @hookimpl
        def mmcore_register_modalities(self, registry):
            registry.add(handler)

    plugin_manager.register(Plugin(), name="picture")
    pte = program_path(make_spec(vision=VisionEncoderSpec()))
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))

    first = runner.generate([Picture(image), "what is it"], GREEDY)
    assert handler.encoded == 1 and first.stats.extra["encoder_cache_hits"] == 0
    runner.reset()
    again = runner.generate([Picture(image.clone()), "what is it"], GREEDY)
    assert handler.encoded == 1 and again.stats.extra["encoder_cache_hits"] == 1
    assert again.tokens == first.tokens
    assert runner.encoder_cache is not None and runner.encoder_cache.stats.saved_s > 0
    runner.reset()
    runner.generate([Picture(image + 0.01), "what is it"], GREEDY)
    assert handler.encoded == 2  # a different image is encoded

    uncached = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager, encoder_cache=False)
    uncached.generate([Picture(image), "what is it"], GREEDY)
    assert handler.encoded == 3


def test_encoder_cache_is_bounded_by_bytes():
    cache = EncoderCache(max_bytes=3 * 4 * 64)  # three [1, 1, 64] float32 embeddings
    for i in range(5):
        cache.put(f"k{i}", EmbeddingsInput(torch.zeros(1, 1, 64)), 0.1)
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") is not None
    assert cache.nbytes <= cache.max_bytes


def test_top_logprobs_match_a_reference_loop_over_the_program_logits(runner):
    """Greedy top-5 alternatives per token are the log-softmax of the program's own logits, the
    chosen token first; the Python path runs only because they were asked for."""
    import numpy as np

    from mmcore import TokensInput

    config = GREEDY.replace(top_logprobs=5, max_new_tokens=6)
    assert config.logprobs  # implied
    ids = runner.tokenizer.encode("the quick brown fox")
    result = runner.generate([TokensInput(ids)], config)
    assert result.top_logprobs is not None and len(result.top_logprobs) == len(result.tokens) == 6
    # reference: step the decoder by hand, log-softmax in float64
    runner.reset()
    logits = runner.decoder.prefill_ids(ids, 0, runner.metadata.max_seq_len)
    pos = len(ids)
    for token, logprob, top in zip(result.tokens, result.logprobs or [], result.top_logprobs, strict=True):
        row = np.asarray(logits, dtype=np.float64)
        reference = row - row.max() - np.log(np.exp(row - row.max()).sum())
        assert token == int(np.argmax(row)) and top[0][0] == token
        assert abs(logprob - reference[token]) < 1e-4
        order = sorted(range(len(row)), key=lambda i: (-reference[i], i))[:5]
        assert [i for i, _ in top] == order
        assert np.allclose([v for _, v in top], reference[order], atol=1e-4)
        logits = runner.decoder.step_token(token, pos).copy()
        pos += 1


def test_adjacent_token_segments_are_written_in_one_decoder_call(runner, monkeypatch):
    """A re-sent conversation's new part (an answer's tail, then the next message) is one write."""
    from mmcore import TokensInput

    first, second = runner.tokenizer.encode("the quick brown"), runner.tokenizer.encode("fox jumps")
    expected = runner.generate([TokensInput(first + second)], GREEDY)
    runner.reset()
    calls: list[int] = []
    original = runner.decoder.prefill_ids

    def counted(ids, start_pos, chunk):
        calls.append(len(ids))
        return original(ids, start_pos, chunk)

    monkeypatch.setattr(runner.decoder, "prefill_ids", counted)
    result = runner.generate([TokensInput(first), TokensInput(second)], GREEDY)
    assert calls == [len(first) + len(second)]
    assert result.tokens == expected.tokens
