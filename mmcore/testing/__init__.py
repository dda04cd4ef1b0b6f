"""Tiny deterministic ExecuTorch LLM programs, their tokenizer and an eager reference, for tests.

Build a tokenizer and a program once per cache directory, then compare a runner against the eager twin::

    tok_dir = build_tokenizer()
    spec = ProgramSpec(DecoderSpec.tiny(tokenizer_vocab_size(tok_dir)), vision=VisionEncoderSpec())
    pte = build_program(spec)
    expected = eager_model(spec).greedy_generate([("tokens", [0, 5, 6])], max_new_tokens=8)
"""

from mmcore.testing._files import CACHE_ENV_VAR, default_cache_dir
from mmcore.testing.cache import build_program, cached_data_path, cached_program_path, program_cache_key
from mmcore.testing.cpp_reference import cpp_generate, until_stop
from mmcore.testing.export import export_program
from mmcore.testing.faults import failing_decoder_call
from mmcore.testing.inputs import photo_like, sample_audio, sample_image
from mmcore.testing.reference import EagerProgram, Segment, SegmentKind, eager_model
from mmcore.testing.scripted import ScriptedProgram, build_scripted_program
from mmcore.testing.specs import (
    METADATA_METHODS,
    AudioEncoderSpec,
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
)
from mmcore.testing.tokenizer import (
    AUDIO_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    build_tokenizer,
    piece_table,
    tokenizer_vocab_size,
)

__all__ = [
    "photo_like",
    "cached_data_path",
    "failing_decoder_call",
    "AUDIO_TOKEN",
    "BOS_TOKEN",
    "CACHE_ENV_VAR",
    "EOS_TOKEN",
    "IMAGE_TOKEN",
    "METADATA_METHODS",
    "SPECIAL_TOKENS",
    "AudioEncoderSpec",
    "DecoderSpec",
    "EagerProgram",
    "ProgramSpec",
    "Segment",
    "SegmentKind",
    "VisionEncoderSpec",
    "build_program",
    "build_scripted_program",
    "ScriptedProgram",
    "cpp_generate",
    "cached_program_path",
    "build_tokenizer",
    "default_cache_dir",
    "eager_model",
    "export_program",
    "piece_table",
    "program_cache_key",
    "sample_audio",
    "sample_image",
    "tokenizer_vocab_size",
    "until_stop",
]
