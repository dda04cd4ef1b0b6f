"""LLM metadata read from a program's constant methods, with ExecuTorch's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmcore import constants as C
from mmcore.errors import MissingMetadataError, ProgramError

if TYPE_CHECKING:
    from mmcore.program import Program
    from mmcore.tokenizer import Tokenizer

__all__ = ["LLMMetadata"]


@dataclass(frozen=True)
class LLMMetadata:
    """What the runner needs to know about a program.

    Fields:
        max_seq_len: longest sequence one decoder call accepts (prefill chunk size).
        max_context_len: KV-cache capacity in positions.
        use_kv_cache: the decoder keeps a KV cache (else the whole sequence is re-fed each step).
        enable_dynamic_shape: the exporter declared a dynamic sequence dimension.
        bos_id: beginning-of-sequence id (tokenizer's, else the program's `get_bos_id`).
        eos_ids: ids that end generation: the union of the tokenizer's and the program's.
        vocab_size: the program's `get_vocab_size`, if declared.
    """

    max_seq_len: int
    max_context_len: int
    use_kv_cache: bool
    enable_dynamic_shape: bool
    bos_id: int | None
    eos_ids: frozenset[int]
    vocab_size: int | None

    @classmethod
    def from_program(cls, program: Program, tokenizer: Tokenizer | None = None) -> LLMMetadata:
        """Read the metadata; `get_max_seq_len` is required as in ExecuTorch, the rest default.

        Unlike ExecuTorch (which lets `get_eos_ids` replace the tokenizer's EOS and ignores the
        singular `get_eos_id`), the EOS set is the union of all three sources.
        """
        from mmcore.joint_decoder import joint_decoder_bound

        bound = None if C.GET_MAX_SEQ_LEN in program.method_names else joint_decoder_bound(program)
        if bound is not None:  # ExecuTorch's Gemma 4 export writes no metadata methods
            max_seq_len = max_context_len = bound
        elif C.GET_MAX_SEQ_LEN not in program.method_names:
            raise MissingMetadataError(
                f"program {program.path} has no '{C.GET_MAX_SEQ_LEN}' metadata method; ExecuTorch "
                "runners require it. Re-export with constant_methods={'get_max_seq_len': N, ...}"
            )
        else:
            max_seq_len = _positive_int(program, C.GET_MAX_SEQ_LEN, program.constant(C.GET_MAX_SEQ_LEN))
            max_context_len = _positive_int(
                program, C.GET_MAX_CONTEXT_LEN, program.constant_or(C.GET_MAX_CONTEXT_LEN, max_seq_len)
            )
        eos: set[int] = set()
        for name in (C.GET_EOS_IDS, C.GET_EOS_ID):
            value = program.constant_or(name, [])
            eos.update(int(v) for v in (value if isinstance(value, list) else [value]))
        bos_id: int | None = None
        if tokenizer is not None:
            eos.update(tokenizer.eos_ids)
            bos_id = tokenizer.bos_id
        if bos_id is None and C.GET_BOS_ID in program.method_names:
            bos_id = int(program.constant(C.GET_BOS_ID))
        vocab = program.constant_or(C.GET_VOCAB_SIZE, None)
        return cls(
            max_seq_len=max_seq_len,
            max_context_len=max_context_len,
            use_kv_cache=bool(program.constant_or(C.USE_KV_CACHE, True)),
            enable_dynamic_shape=bool(program.constant_or(C.ENABLE_DYNAMIC_SHAPE, False)),
            bos_id=bos_id,
            eos_ids=frozenset(eos),
            vocab_size=int(vocab) if vocab is not None else None,
        )


def _positive_int(program: Program, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProgramError(f"program {program.path}: metadata '{name}' must be a positive integer, got {value!r}")
    return value
