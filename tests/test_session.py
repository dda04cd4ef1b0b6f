"""Sessions: KV reuse across turns equals fresh runs, edits rewind, failures and cancellation are clean."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

import mmcore
from mmcore import (
    ContextOverflowError,
    EmbeddingsInput,
    GenerationConfig,
    InvalidInputError,
    PrefillContext,
    hookimpl,
)
from mmcore.chat import PlainRenderer
from mmcore.runner import MultimodalRunner
from mmcore.session import Session
from mmcore.testing import (
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_tokenizer,
    failing_decoder_call,
    tokenizer_vocab_size,
)

GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=8)


class Picture:
    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels


class PictureHandler:
    name = "picture"
    input_types = (Picture,)

    def __init__(self) -> None:
        self.encoded = 0

    def preprocess(self, item: Picture, ctx: PrefillContext) -> torch.Tensor:
        return item.pixels.unsqueeze(0)

    def prefill(self, pixels: torch.Tensor, ctx: PrefillContext) -> EmbeddingsInput:
        self.encoded += 1
        return EmbeddingsInput(ctx.program.method("vision_encoder").execute([pixels])[0])

    def from_content(self, part):
        return Picture(part["picture"])


@pytest.fixture
def handler(plugin_manager) -> PictureHandler:
    handler = PictureHandler()

    class Plugin:
        @hookimpl
        def mmcore_register_modalities(self, registry):
            registry.add(handler)

    plugin_manager.register(Plugin(), name="picture")
    return handler


@pytest.fixture
def make_runner(make_spec, program_path, tokenizer_dir, plugin_manager, handler):
    pte = program_path(make_spec(vision=VisionEncoderSpec(), decoder_max_context_len=256))

    def make() -> MultimodalRunner:
        return MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager)

    return make


IMAGE = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
TURN1 = {"role": "user", "content": [{"type": "picture", "picture": IMAGE}, {"type": "text", "text": "what is it"}]}


def fresh_run(make_runner, messages) -> list[int]:
    """A single-shot run of the whole rendered conversation on a new runner."""
    runner = make_runner()
    inputs = PlainRenderer(runner._plugins().modality_registry()).render(messages)
    return runner.generate(inputs, GREEDY.replace(num_bos=1)).tokens


def test_three_turns_equal_fresh_runs_and_reuse_the_cache(make_runner, handler):
    session = Session(make_runner())
    config = GREEDY.replace(num_bos=1)
    first = session.send(TURN1, config)
    assert first.tokens == fresh_run(make_runner, [TURN1])
    assert first.stats.extra["reused_prompt_tokens"] == 0

    second = session.send("and the colour", config)
    assert second.tokens == fresh_run(make_runner, session.messages[:-1])
    new_tokens = len(session.runner.tokenizer.encode("and the colour"))
    # Only the new text (plus turn 1's last token, never fed to the cache) is prefilled.
    assert second.stats.extra["new_prompt_tokens"] == new_tokens + 1
    assert second.stats.extra["reused_prompt_tokens"] > 16

    encoded = handler.encoded
    third = session.send({"role": "user", "content": [{"type": "picture", "picture": IMAGE.clone()}]}, config)
    assert handler.encoded == encoded  # the same image again skips the encoder
    assert third.stats.extra["encoder_cache_hits"] == 2  # turn 1's image and the new copy
    assert third.tokens == fresh_run(make_runner, session.messages[:-1])
    assert len(session.messages) == 6


def test_edited_history_rewinds_to_the_common_prefix(make_runner):
    session = Session(make_runner())
    session.send(TURN1, GREEDY)
    session.send("tell me more", GREEDY)
    session.truncate(2)
    edited = session.send("something else", GREEDY)
    runner = make_runner()
    inputs = PlainRenderer(runner._plugins().modality_registry()).render(session.messages[:-1])
    assert edited.tokens == runner.generate(inputs, GREEDY).tokens
    assert edited.stats.extra["reused_prompt_tokens"] >= 16


def test_a_failed_turn_leaves_the_session_as_before(make_runner):
    session = Session(make_runner())
    session.send(TURN1, GREEDY)
    before = list(session.messages)
    with failing_decoder_call(session.runner, 1, "injected"), pytest.raises(RuntimeError, match="injected"):
        session.send("and then", GREEDY)
    assert session.messages == before
    reference = Session(make_runner())
    reference.send(TURN1, GREEDY)
    assert session.send("and then", GREEDY).tokens == reference.send("and then", GREEDY).tokens


def test_cancelled_turn_is_kept_as_far_as_it_went(make_runner):
    session = Session(make_runner())
    long = GREEDY.replace(max_new_tokens=40, ignore_eos=True)
    pieces = []

    def stop_after_four(piece):
        pieces.append(piece)
        if len(pieces) == 4:
            session.runner.stop()

    cut = session.send(TURN1, long, piece_callback=stop_after_four)
    assert cut.stop_reason == "stopped" and len(cut.tokens) == 4
    follow = session.send("go on", GREEDY)
    # Same as a conversation whose first answer was exactly those four tokens.
    history = [
        TURN1,
        {"role": "assistant", "content": cut.text, "tokens": cut.tokens},
        {"role": "user", "content": "go on"},
    ]
    runner = make_runner()
    inputs = PlainRenderer(runner._plugins().modality_registry()).render(history)
    assert follow.tokens == runner.generate(inputs, GREEDY).tokens


def test_context_policies(make_runner):
    strict = Session(make_runner())
    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)
    strict.send(long_text, GREEDY)
    with pytest.raises(ContextOverflowError, match="sliding"):
        for _ in range(5):
            strict.send(long_text, GREEDY)
    turns = len(strict.messages)
    sliding = Session(make_runner(), context_policy="sliding")
    for _ in range(6):
        result = sliding.send(long_text, GREEDY)
    assert result.stats.extra["dropped_messages"] >= 1
    assert len(sliding.messages) <= turns + 2


@pytest.mark.parametrize("stage", ["encoder", "prefill", "decode", "callback"])
def test_fault_injection_at_every_stage_leaves_the_session_consistent(make_runner, handler, stage):
    session = Session(make_runner())
    session.send("the quick brown fox", GREEDY)
    before = list(session.messages)
    runner = session.runner
    turn = {"role": "user", "content": [{"type": "picture", "picture": IMAGE}, {"type": "text", "text": "and now"}]}
    restore = []

    def fail(*args, **kwargs):
        raise RuntimeError(f"injected in {stage}")

    if stage == "encoder":
        restore.append((handler, "prefill", handler.prefill))
        handler.prefill = fail  # type: ignore[method-assign]
    # decoder calls: the image rows, then the text, then one per decoded token
    failing = {"prefill": 2, "decode": 4}.get(stage)
    faults = failing_decoder_call(runner, failing, f"injected in {stage}") if failing else contextlib.nullcontext()
    callback = fail if stage == "callback" else None
    with faults, pytest.raises((RuntimeError, InvalidInputError), match="injected"):  # plugin faults become typed
        session.send(turn, GREEDY, token_callback=callback)
    for owner, name, value in restore:
        setattr(owner, name, value)
    assert session.messages == before
    reference = Session(make_runner())
    reference.send("the quick brown fox", GREEDY)
    assert session.send(turn, GREEDY).tokens == reference.send(turn, GREEDY).tokens


def _adapter_session(tmp_path):
    """A session rendered by an adapter (ExecuTorch LLaVA's), whose renderer encodes each image itself."""
    from PIL import Image

    tokenizer = build_tokenizer()
    decoder = DecoderSpec.tiny(tokenizer_vocab_size(tokenizer))
    spec = ProgramSpec(decoder=dataclasses.replace(decoder, max_context_len=512, max_seq_len=256),
                       vision=VisionEncoderSpec(dtype="uint8", rank=3))  # fmt: skip
    photo = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(photo)
    model = mmcore.open_model(build_program(spec), tokenizer=tokenizer, adapter="executorch-llava")
    turn = {"role": "user", "content": [{"type": "image", "image": str(photo)}, {"type": "text", "text": "what is it"}]}
    return model, turn


@pytest.mark.parametrize("path", ["plain", "adapter"])
def test_encoder_cache_hits_on_every_path(make_runner, handler, tmp_path, path):
    if path == "plain":
        session, turn, model = Session(make_runner()), TURN1, None
    else:
        model, turn = _adapter_session(tmp_path)
        session = model.session()
    cache = session.runner.encoder_cache
    assert cache is not None

    def hits(result) -> int:
        extra = result.stats.extra
        assert (extra["encoder_cache_saved_s"] > 0) == (extra["encoder_cache_hits"] > 0)
        return int(extra["encoder_cache_hits"])

    def counted(send) -> tuple[int, int]:
        """The turn's reported hits and the hits the cache itself counted meanwhile."""
        before = cache.stats.hits
        reported = hits(send())
        return reported, cache.stats.hits - before

    config = GREEDY.replace(num_bos=1) if path == "plain" else GREEDY
    assert counted(lambda: session.send(turn, config)) == (0, 0)  # first turn: encoded
    assert counted(lambda: session.send("and the colour", config)) == (1, 1)  # later turn: history image
    session.reset()
    assert counted(lambda: session.send(turn, config)) == (1, 1)  # after reset
    session.send("tell me more", config)
    session.truncate(2)
    assert counted(lambda: session.send("something else", config)) == (1, 1)  # after an edit
    if model is not None:  # a whole conversation from scratch
        assert counted(lambda: model.chat([turn], config)) == (1, 1)
