"""Shared fixtures: the tiny tokenizer, cached test programs, a plugin manager with only the text
plugin, and the ExecuTorch C++ runner binding as the reference."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcore.plugins import PluginManager
from mmcore.testing import DecoderSpec, ProgramSpec, build_program, build_tokenizer, piece_table, tokenizer_vocab_size

ProgramFactory = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def executorch_llm_custom_ops() -> None:
    """ExecuTorch's own LLM custom-ops library, loaded before any test runs a program.

    The C++ runner binding (the reference) shares the runtime's kernel registry with mmcore. With
    ExecuTorch's `llama::` kernels registered first, mmcore leaves those operators to them
    (mmcore.kernels), so an in-process reference never runs mmcore's own kernels; tests of those
    kernels run mmcore in a subprocess (tests/test_llm_custom_ops.py).
    """
    import ctypes
    import os

    from mmcore import kernels, native

    root = native.executorch_root()
    if root is not None:
        with kernels.quiet_stderr():
            ctypes.CDLL(str(root / "extension/llm/custom_ops/libcustom_ops_aot_lib.so"), mode=os.RTLD_GLOBAL)


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return build_tokenizer()


@pytest.fixture(scope="session")
def vocab_size(tokenizer_dir: Path) -> int:
    return tokenizer_vocab_size(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_decoder(vocab_size: int) -> DecoderSpec:
    return DecoderSpec.tiny(vocab_size)


@pytest.fixture(scope="session")
def make_spec(tiny_decoder: DecoderSpec) -> Callable[..., ProgramSpec]:
    """ProgramSpec with the tiny decoder; keyword arguments override fields (decoder fields via `decoder_*`)."""

    def make(**overrides: Any) -> ProgramSpec:
        decoder_changes = {
            k.removeprefix("decoder_"): overrides.pop(k) for k in list(overrides) if k.startswith("decoder_")
        }
        decoder = dataclasses.replace(tiny_decoder, **decoder_changes)
        return ProgramSpec(decoder=decoder, **overrides)

    return make


@pytest.fixture(scope="session")
def program_path() -> Callable[[ProgramSpec], Path]:
    """The cached `.pte` of a spec (exported on first use)."""
    return build_program


@pytest.fixture
def plugin_manager() -> PluginManager:
    """A fresh manager that sees only the text plugin, whatever else is installed."""
    import mmcore_text

    pm = PluginManager(entry_points=False)
    pm.register(mmcore_text, name="text")
    return pm


@pytest.fixture(scope="session")
def pieces(tokenizer_dir: Path) -> dict[str, int]:
    return piece_table(tokenizer_dir)


class CppReference:
    """ExecuTorch's C++ runners through their Python binding, returning token ids."""

    def __init__(self, tokenizer_dir: Path, pieces: dict[str, int]) -> None:
        self.tokenizer_dir = tokenizer_dir
        self.pieces = pieces

    def multimodal(self, pte: Path) -> Any:
        from executorch.extension.llm.runner import MultimodalRunner

        return MultimodalRunner(str(pte), str(self.tokenizer_dir))

    def text(self, pte: Path) -> Any:
        from executorch.extension.llm.runner import TextLLMRunner

        return TextLLMRunner(str(pte), str(self.tokenizer_dir))

    def generate(self, runner: Any, prompt: Any, max_new_tokens: int, **config: Any) -> list[int]:
        from executorch.extension.llm.runner import GenerationConfig

        streamed: list[str] = []
        cfg = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=max_new_tokens, warming=True, **config)
        runner.generate(prompt, cfg, streamed.append)
        return [self.pieces[p] for p in streamed]

    @staticmethod
    def inputs(items: Sequence[Any]) -> list[Any]:
        """C++ MultimodalInputs from ("tokens", ids) / ("text", str) / ("image", tensor) / ("audio", tensor) items."""
        from executorch.extension.llm import runner as et

        made = []
        for kind, value in items:
            if kind == "tokens":
                made.append(et.make_token_input(list(value)))
            elif kind == "text":
                made.append(et.make_text_input(value))
            elif kind == "image":
                made.append(et.make_image_input(value))
            elif kind == "audio":
                made.append(et.make_audio_input(value))
            else:
                raise ValueError(kind)
        return made


@pytest.fixture(scope="session")
def cpp(tokenizer_dir: Path, pieces: dict[str, int]) -> CppReference:
    return CppReference(tokenizer_dir, pieces)


@pytest.fixture(scope="session")
def sample_image_tensor() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.rand(3, 32, 32, generator=g)  # [3, H, W] in [0, 1]
