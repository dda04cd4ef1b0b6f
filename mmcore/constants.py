"""ExecuTorch's LLM method and metadata names (`extension/llm/runner/constants.h`)."""

from __future__ import annotations

__all__ = [
    "FORWARD",
    "PREFILL",
    "TOKEN_EMBEDDING",
    "TEXT_DECODER",
    "VISION_ENCODER",
    "AUDIO_ENCODER",
    "GET_MAX_SEQ_LEN",
    "GET_MAX_CONTEXT_LEN",
    "GET_BOS_ID",
    "GET_EOS_IDS",
    "GET_EOS_ID",
    "GET_VOCAB_SIZE",
    "USE_KV_CACHE",
    "ENABLE_DYNAMIC_SHAPE",
    "USE_SDPA_WITH_KV_CACHE",
    "DEFAULT_MAX_SEQ_LEN",
]

# Methods of a text-only program.
FORWARD = "forward"
PREFILL = "prefill"

# Methods of a multimodal program.
TOKEN_EMBEDDING = "token_embedding"
TEXT_DECODER = "text_decoder"
VISION_ENCODER = "vision_encoder"
AUDIO_ENCODER = "audio_encoder"

# Constant metadata methods.
GET_MAX_SEQ_LEN = "get_max_seq_len"
GET_MAX_CONTEXT_LEN = "get_max_context_len"
GET_BOS_ID = "get_bos_id"
GET_EOS_IDS = "get_eos_ids"
GET_EOS_ID = "get_eos_id"  # optimum-executorch writes the singular form
GET_VOCAB_SIZE = "get_vocab_size"
USE_KV_CACHE = "use_kv_cache"
ENABLE_DYNAMIC_SHAPE = "enable_dynamic_shape"
USE_SDPA_WITH_KV_CACHE = "use_sdpa_with_kv_cache"

DEFAULT_MAX_SEQ_LEN = 128
