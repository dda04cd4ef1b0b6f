"""The built-in default program that `mmcore demo` runs: a tiny program built on first use and cached."""

from __future__ import annotations

from pathlib import Path

from mmcore.testing import (
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_tokenizer,
    cached_program_path,
    tokenizer_vocab_size,
)

__all__ = ["demo_spec", "default_program", "is_built"]


def demo_spec(tokenizer_dir: Path) -> ProgramSpec:
    """The demo program: a tiny random-weight decoder with a vision encoder (portable kernels)."""
    return ProgramSpec(decoder=DecoderSpec.tiny(tokenizer_vocab_size(tokenizer_dir)), vision=VisionEncoderSpec())


def is_built() -> bool:
    """Whether the demo program is already cached (building it takes 10-20 s)."""
    tokenizer_dir = build_tokenizer()
    return cached_program_path(demo_spec(tokenizer_dir)).is_file()


def default_program() -> tuple[Path, Path]:
    """Paths of the demo `.pte` and its tokenizer directory, building them if needed."""
    tokenizer_dir = build_tokenizer()
    return build_program(demo_spec(tokenizer_dir)), tokenizer_dir
