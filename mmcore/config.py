"""Generation settings: ExecuTorch's `GenerationConfig` plus sampling and stop controls."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mmcore.errors import ConfigError
from mmcore.speculative.settings import SpeculativeConfig, parse_speculative
from mmcore.structured.formats import ResponseFormat

__all__ = ["GenerationConfig", "MAX_TOP_LOGPROBS", "resolve_max_new_tokens"]

#: Most alternatives `top_logprobs` may ask for per token (OpenAI's limit).
MAX_TOP_LOGPROBS = 20


def resolve_max_new_tokens(
    max_context_len: int, num_tokens_occupied: int, *, seq_len: int = -1, max_new_tokens: int = -1
) -> int:
    """How many tokens a turn may emit, exactly as ExecuTorch's `irunner.h` computes it (never below 0)."""
    if seq_len == -1 and max_new_tokens == -1:
        result = max_context_len - num_tokens_occupied
    elif seq_len == -1:
        result = min(max_new_tokens, max_context_len - num_tokens_occupied)
    elif max_new_tokens == -1:
        result = min(seq_len, max_context_len) - num_tokens_occupied
    else:
        result = min(min(seq_len, max_context_len) - num_tokens_occupied, max_new_tokens)
    return max(0, result)


@dataclass(frozen=True)
class GenerationConfig:
    """What one `generate` call does. Defaults follow ExecuTorch's `GenerationConfig`.

    Fields:
        echo: stream the prompt text through the token callback before generating.
        max_new_tokens: cap on emitted tokens, the first (prefill) token included; -1 = no cap.
        seq_len: cap on total positions (prompt + generated); -1 = the context length.
        temperature: 0 = greedy; otherwise logits are divided by it before sampling.
        top_k: sample among the k most likely tokens; 0 = no limit.
        top_p: nucleus sampling mass in (0, 1]; 1 = no limit.
        seed: seed of the sampler's generator; None = a fresh random seed per call.
        num_bos: BOS tokens before the first text input of a conversation.
        num_eos: EOS tokens after the first text input of a conversation.
        ignore_eos: keep generating past end-of-sequence tokens.
        stop: strings that end generation; the text returned stops before them.
        warming: a warm-up run: nothing is reported to the stats callback.
        repetition_penalty: > 1 discourages tokens already generated (logits divided, or
            multiplied when negative, as Hugging Face); 1 = off.
        frequency_penalty: subtracted from a token's logit once per time it was generated; 0 = off.
        presence_penalty: subtracted from the logit of any token generated at least once; 0 = off.
        logprobs: report each generated token's log-probability (under the sampled distribution).
        top_logprobs: also report each token's k most likely alternatives (0..20, as OpenAI) from
            the same distribution; > 0 implies `logprobs`.
        speculative: speculative decoding (`SpeculativeConfig`, a method name "ngram" | "draft" |
            "off", or a mapping of its fields); None = off.
        response_format: constrain the answer: an OpenAI-style dict (`{"type": "json_object"}`,
            `{"type": "json_schema", "json_schema": {"name", "schema"}}`, `{"type": "regex", "regex"}`,
            `{"type": "grammar", "grammar", "syntax"}`) or a `ResponseFormat`; stored as a
            `ResponseFormat` (None = unconstrained). See docs/structured-output.md.
    """

    echo: bool = True
    max_new_tokens: int = -1
    seq_len: int = -1
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    num_bos: int = 0
    num_eos: int = 0
    ignore_eos: bool = False
    stop: tuple[str, ...] = field(default=())
    warming: bool = False
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    speculative: SpeculativeConfig | None = None
    response_format: ResponseFormat | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_bool(self, "echo", "ignore_eos", "warming", "logprobs")
        for name in ("max_new_tokens", "seq_len"):
            value = _int_field(self, name)
            if value != -1 and value < 1:
                raise ConfigError(f"GenerationConfig.{name} must be -1 (no limit) or a positive integer, got {value}")
        for name in ("top_k", "num_bos", "num_eos"):
            value = _int_field(self, name)
            if value < 0:
                raise ConfigError(f"GenerationConfig.{name} must be >= 0, got {value}")
        top_logprobs = _int_field(self, "top_logprobs")
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise ConfigError(
                f"GenerationConfig.top_logprobs must be in [0, {MAX_TOP_LOGPROBS}] (0 = off), got {top_logprobs}"
            )
        if top_logprobs:
            object.__setattr__(self, "logprobs", True)
        temperature = self.temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ConfigError(f"GenerationConfig.temperature must be a number >= 0, got {temperature!r}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ConfigError(
                f"GenerationConfig.temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
            )
        for name in ("repetition_penalty", "frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"GenerationConfig.{name} must be a finite number, got {value!r}")
        if self.repetition_penalty <= 0:
            raise ConfigError(
                f"GenerationConfig.repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}"
            )
        top_p = self.top_p
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ConfigError(f"GenerationConfig.top_p must be in (0, 1], got {top_p!r}")
        if self.seed is not None:
            seed = _int_field(self, "seed")
            if not 0 <= seed < 2**63:
                raise ConfigError(f"GenerationConfig.seed must be in [0, 2**63) or None, got {seed}")
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, (tuple, list)) or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"GenerationConfig.stop must be a sequence of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(stop))
        object.__setattr__(self, "speculative", parse_speculative(self.speculative))
        if self.response_format is not None:
            from mmcore.structured.constraint import check_response_format

            fmt = check_response_format(self.response_format)
            if fmt is not None and self.ignore_eos:
                raise ConfigError(
                    "GenerationConfig.ignore_eos cannot be combined with response_format: the constraint "
                    "decides where the answer ends; drop one of them"
                )
            object.__setattr__(self, "response_format", fmt)

    @property
    def is_greedy(self) -> bool:
        """True when sampling reduces to argmax."""
        return self.temperature == 0 or self.top_k == 1

    def resolve_max_new_tokens(self, max_context_len: int, num_tokens_occupied: int) -> int:
        """ExecuTorch's `resolve_max_new_tokens` for this config."""
        return resolve_max_new_tokens(
            max_context_len,
            num_tokens_occupied,
            seq_len=self.seq_len,
            max_new_tokens=self.max_new_tokens,
        )

    def replace(self, **changes: Any) -> GenerationConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(
                f"GenerationConfig has no field(s) {sorted(unknown)}; fields are {[f.name for f in fields(self)]}"
            )
        return replace(self, **changes)


def _int_field(config: GenerationConfig, name: str) -> int:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"GenerationConfig.{name} must be an integer, got {value!r}")
    return value


def _check_bool(config: GenerationConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ConfigError(f"GenerationConfig.{name} must be True or False, got {value!r}")
