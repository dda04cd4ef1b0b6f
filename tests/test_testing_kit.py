"""Self-check of mmcore.testing: programs match their eager twins and ExecuTorch's C++ runners."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcore.testing import (
    BOS_TOKEN,
    EOS_TOKEN,
    AudioEncoderSpec,
    DecoderSpec,
    EagerProgram,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_tokenizer,
    default_cache_dir,
    eager_model,
    piece_table,
    sample_audio,
    sample_image,
    tokenizer_vocab_size,
)

PROMPT = "The cat sees a blue box near the sea."


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The persistent kit cache, so programs are exported once across test runs."""
    return default_cache_dir()


@pytest.fixture(scope="session")
def tokenizer_dir(cache_dir: Path) -> Path:
    return build_tokenizer(cache_dir)


@pytest.fixture(scope="session")
def mm_spec(tokenizer_dir: Path) -> ProgramSpec:
    return ProgramSpec(
        DecoderSpec.tiny(tokenizer_vocab_size(tokenizer_dir)),
        vision=VisionEncoderSpec(),
        audio=AudioEncoderSpec(),
    )


@pytest.fixture(scope="session")
def mm_pte(mm_spec: ProgramSpec, cache_dir: Path) -> Path:
    return build_program(mm_spec, cache_dir)


@pytest.fixture(scope="session")
def text_spec(tokenizer_dir: Path) -> ProgramSpec:
    return ProgramSpec(DecoderSpec.tiny(tokenizer_vocab_size(tokenizer_dir)), kind="text")


@pytest.fixture(scope="session")
def pieces(tokenizer_dir: Path) -> dict[str, int]:
    return piece_table(tokenizer_dir)


def _encode(tokenizer_dir: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return list(tok.encode(text).ids)


def _load_methods(pte: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Each method from its own Program, so methods do not share a planned-memory arena."""
    from executorch.runtime import Runtime

    runtime = Runtime.get()
    return {name: runtime.load_program(str(pte)).load_method(name) for name in names}


# -- tokenizer ---------------------------------------------------------------------------------------


def test_tokenizer_layout(tokenizer_dir: Path, pieces: dict[str, int]) -> None:
    assert (tokenizer_dir / "tokenizer.json").is_file()
    assert (tokenizer_dir / "tokenizer_config.json").is_file()
    assert tokenizer_vocab_size(tokenizer_dir) == 512
    assert len(pieces) == 512
    assert pieces[BOS_TOKEN] == 0 and pieces[EOS_TOKEN] == 1
    assert pieces["<|image|>"] == 2 and pieces["<|audio|>"] == 3
    assert all(piece.isascii() for piece in pieces)


def test_tokenizer_is_deterministic(tokenizer_dir: Path, tmp_path: Path) -> None:
    again = build_tokenizer(tmp_path)
    assert (again / "tokenizer.json").read_bytes() == (tokenizer_dir / "tokenizer.json").read_bytes()


def test_tokenizer_loads_in_cpp(tokenizer_dir: Path) -> None:
    from pytorch_tokenizers.pytorch_tokenizers_cpp import HFTokenizer

    expected = _encode(tokenizer_dir, PROMPT)
    assert expected[0] == 0
    for path in (tokenizer_dir, tokenizer_dir / "tokenizer.json"):
        tok = HFTokenizer()
        tok.load(str(path))
        assert tok.vocab_size() == 512
        assert tok.bos_tok() == 0 and tok.eos_tok() == 1
        assert list(tok.encode(PROMPT, 1, 0)) == expected


# -- multimodal program --------------------------------------------------------------------------------


def test_build_program_is_cached(mm_spec: ProgramSpec, mm_pte: Path, cache_dir: Path) -> None:
    start = time.perf_counter()
    assert build_program(mm_spec, cache_dir) == mm_pte
    assert time.perf_counter() - start < 0.5
    assert not list(cache_dir.glob(".*.tmp"))


def test_multimodal_methods_match_eager(mm_spec: ProgramSpec, mm_pte: Path, tokenizer_dir: Path) -> None:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(mm_pte))
    assert set(mm_spec.method_names) <= set(program.method_names)
    metadata = {name: program.load_method(name).execute([]) for name in mm_spec.metadata()}
    assert metadata["get_max_seq_len"] == [64] and metadata["get_max_context_len"] == [128]
    assert metadata["get_eos_ids"] == [1] and metadata["use_kv_cache"] == [True]

    methods = _load_methods(mm_pte, mm_spec.method_names)
    eager = eager_model(mm_spec)
    ids = torch.tensor([_encode(tokenizer_dir, PROMPT)])  # [1, T]
    embeds = methods["token_embedding"].execute([ids])[0]  # [1, T, D]
    torch.testing.assert_close(embeds, eager.token_embedding(ids), atol=1e-4, rtol=0)

    image = sample_image(VisionEncoderSpec())
    torch.testing.assert_close(
        methods["vision_encoder"].execute([image])[0], eager.vision_encoder(image), atol=1e-4, rtol=0
    )
    for batch in (1, 3):
        audio = sample_audio(AudioEncoderSpec(), batch=batch)
        out = methods["audio_encoder"].execute([audio])[0]
        assert out.shape == (1, 10 * batch, 64)
        torch.testing.assert_close(out, eager.audio_encoder(audio), atol=1e-4, rtol=0)

    # Two decoder calls: the second attends to the cache the first wrote.
    eager.reset()
    for start, chunk in ((0, embeds[:, :5]), (5, embeds[:, 5:])):
        pos = torch.tensor([start])
        got = methods["text_decoder"].execute([chunk, pos])[0]  # [1, V]
        torch.testing.assert_close(got, eager.text_decoder(chunk, pos), atol=1e-4, rtol=0)


def test_eager_depends_on_context(mm_spec: ProgramSpec) -> None:
    eager = eager_model(mm_spec)
    base = eager.greedy_generate([("tokens", [0, 40, 41, 42])], 8)
    assert eager.greedy_generate([("tokens", [40, 41, 42])], 8) != base  # BOS matters
    assert len(set(base)) > 2


def test_eager_eos_rule(mm_spec: ProgramSpec) -> None:
    eager = eager_model(mm_spec)
    segments: list[Any] = [("tokens", [0, 40, 41, 42])]
    free = eager.greedy_generate(segments, 8, eos_ids=())
    assert len(free) == 8
    assert eager.greedy_generate(segments, 8, eos_ids=[free[0]])[:2] == free[:2]  # prefill token unchecked
    assert eager.greedy_generate(segments, 8, eos_ids=[free[2]]) == free[:3]


def _runner_ids(runner: Any, inputs: Any, pieces: dict[str, int], max_new_tokens: int) -> list[int]:
    from executorch.extension.llm.runner import GenerationConfig

    streamed: list[str] = []
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=max_new_tokens, warming=True)
    runner.generate(inputs, config, streamed.append)
    return [pieces[p] for p in streamed]


def test_multimodal_runner_matches_eager(
    mm_spec: ProgramSpec, mm_pte: Path, tokenizer_dir: Path, pieces: dict[str, int]
) -> None:
    from executorch.extension.llm.runner import MultimodalRunner, make_token_input

    ids = _encode(tokenizer_dir, PROMPT)
    expected = eager_model(mm_spec).greedy_generate([("tokens", ids)], 8)
    runner = MultimodalRunner(str(mm_pte), str(tokenizer_dir))
    assert _runner_ids(runner, [make_token_input(ids)], pieces, 8) == expected


def test_multimodal_runner_with_image_matches_eager(
    mm_spec: ProgramSpec, mm_pte: Path, tokenizer_dir: Path, pieces: dict[str, int]
) -> None:
    from executorch.extension.llm.runner import MultimodalRunner, make_image_input, make_token_input

    head, tail = _encode(tokenizer_dir, "Look at"), _encode(tokenizer_dir, " the picture.")[1:]
    image = sample_image(VisionEncoderSpec(), seed=3)
    expected = eager_model(mm_spec).greedy_generate([("tokens", head), ("image", image), ("tokens", tail)], 12)
    runner = MultimodalRunner(str(mm_pte), str(tokenizer_dir))
    inputs = [make_token_input(head), make_image_input(image), make_token_input(tail)]
    assert _runner_ids(runner, inputs, pieces, 12) == expected


# -- text program --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        {},
        pytest.param(
            {"position_form": "cache_position", "logits": "all"}, id="cache_position-all", marks=pytest.mark.slow
        ),
        pytest.param({"dynamic_shape": False}, id="static", marks=pytest.mark.slow),
        pytest.param({"use_kv_cache": False}, id="no-kv-cache", marks=pytest.mark.slow),
    ],
    ids=lambda v: "default" if not v else None,
)
def test_text_runner_matches_eager(
    text_spec: ProgramSpec,
    variant: dict[str, Any],
    cache_dir: Path,
    tokenizer_dir: Path,
    pieces: dict[str, int],
) -> None:
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    spec = dataclasses.replace(text_spec, **variant)
    pte = build_program(spec, cache_dir)
    ids = _encode(tokenizer_dir, PROMPT)
    expected = eager_model(spec).greedy_generate([("tokens", ids)], 10)

    runner = TextLLMRunner(str(pte), str(tokenizer_dir))
    streamed: list[str] = []
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=10, warming=True, num_bos=1)
    runner.generate(PROMPT, config, streamed.append)
    assert [pieces[p] for p in streamed] == expected


def test_text_forward_matches_eager(text_spec: ProgramSpec, cache_dir: Path, tokenizer_dir: Path) -> None:
    pte = build_program(text_spec, cache_dir)
    forward = _load_methods(pte, ("forward",))["forward"]
    eager: EagerProgram = eager_model(text_spec)
    ids = torch.tensor([_encode(tokenizer_dir, PROMPT)])  # [1, T]
    got = forward.execute([ids, torch.tensor([0])])[0]  # [1, V]
    torch.testing.assert_close(got, eager.forward(ids, torch.tensor([0])), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_fat_vision_encoder_exposes_shared_arena(tokenizer_dir: Path, cache_dir: Path) -> None:
    """The fat encoder's activation overlaps the KV cache when methods share one Program (pitfall 1)."""
    from executorch.runtime import Runtime

    spec = ProgramSpec(
        DecoderSpec.tiny(tokenizer_vocab_size(tokenizer_dir)), vision=VisionEncoderSpec(fat_channels=512)
    )
    pte = build_program(spec, cache_dir)
    image = sample_image(VisionEncoderSpec(fat_channels=512))
    segments: list[Any] = [("tokens", [0, 40, 41, 42]), ("image", image), ("tokens", [50, 51])]
    expected = eager_model(spec).greedy_generate(segments, 10)

    shared = Runtime.get().load_program(str(pte))
    one_program = {name: shared.load_method(name) for name in spec.method_names}
    assert _greedy(one_program, segments, 10) != expected
    assert _greedy(_load_methods(pte, spec.method_names), segments, 10) == expected


def _greedy(methods: dict[str, Any], segments: list[Any], max_new_tokens: int) -> list[int]:
    """A bare greedy loop over runtime methods (start-position form, no EOS check)."""
    pos, logits = 0, torch.zeros(0)
    for kind, value in segments:
        if kind == "tokens":
            embeds = methods["token_embedding"].execute([torch.tensor([value])])[0]  # [1, T, D]
        else:
            embeds = methods["vision_encoder"].execute([value])[0]  # [1, N, D]
        logits = methods["text_decoder"].execute([embeds, torch.tensor([pos])])[0]  # [1, V]
        pos += embeds.shape[1]
    out = [int(logits.argmax())]
    while len(out) < max_new_tokens:
        embeds = methods["token_embedding"].execute([torch.tensor([[out[-1]]])])[0]  # [1, 1, D]
        logits = methods["text_decoder"].execute([embeds, torch.tensor([pos])])[0]
        pos += 1
        out.append(int(logits.argmax()))
    return out
