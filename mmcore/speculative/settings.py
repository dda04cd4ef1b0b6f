"""`SpeculativeConfig`: which drafter proposes tokens, how many, and whether k adapts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from mmcore.errors import ConfigError

__all__ = ["METHODS", "Method", "SpeculativeConfig", "parse_speculative", "speculative_overrides"]

Method = Literal["ngram", "draft", "off"]
METHODS: tuple[str, ...] = ("ngram", "draft", "off")


@dataclass(frozen=True)
class SpeculativeConfig:
    """Speculative decoding settings (`GenerationConfig(speculative=...)`, TOML `[generation.speculative]`).

    Fields:
        method: "ngram" (prompt lookup), "draft" (a smaller program with the same tokenizer) or "off".
        draft_model: the draft `.pte` (method "draft" only).
        num_draft_tokens: the most draft tokens verified per decoder call (k).
        max_ngram: the longest suffix looked up in the history (prompt lookup tries it first).
        min_ngram: the shortest suffix looked up.
        adaptive: adapt k to the recent acceptance rate and switch speculation off while it does not
            pay (by the measured cost of k-row against 1-row decoder calls); False: always k drafts.
    """

    method: Method = "ngram"
    draft_model: Path | None = None
    num_draft_tokens: int = 8
    max_ngram: int = 3
    min_ngram: int = 1
    adaptive: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"speculative.method must be one of {list(METHODS)}, got {self.method!r}")
        if self.draft_model is not None:
            if not isinstance(self.draft_model, (str, Path)) or not str(self.draft_model):
                raise ConfigError(f"speculative.draft_model must be a path to a .pte file, got {self.draft_model!r}")
            object.__setattr__(self, "draft_model", Path(self.draft_model).expanduser())
        if self.method == "draft" and self.draft_model is None:
            raise ConfigError(
                "speculative.method 'draft' needs speculative.draft_model, the path of a smaller .pte with the "
                "same tokenizer (CLI: --draft-model PATH)"
            )
        for name, low in (("num_draft_tokens", 1), ("max_ngram", 1), ("min_ngram", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"speculative.{name} must be an integer >= {low}, got {value!r}")
        if self.min_ngram > self.max_ngram:
            raise ConfigError(f"speculative.min_ngram ({self.min_ngram}) must not exceed max_ngram ({self.max_ngram})")
        if not isinstance(self.adaptive, bool):
            raise ConfigError(f"speculative.adaptive must be true or false, got {self.adaptive!r}")

    @property
    def enabled(self) -> bool:
        return self.method != "off"


def parse_speculative(value: Any) -> SpeculativeConfig | None:
    """A `SpeculativeConfig` from itself, a method name ("ngram", "draft", "off"), a mapping of its
    fields (a TOML table), or None (off)."""
    if value is None or isinstance(value, SpeculativeConfig):
        return value
    if isinstance(value, str):
        return SpeculativeConfig(method=value)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        names = [f.name for f in fields(SpeculativeConfig)]
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ConfigError(f"unknown key speculative.{unknown[0]}; accepted: {names}")
        return SpeculativeConfig(**dict(value))
    raise ConfigError(
        f"speculative must be a SpeculativeConfig, a method name {list(METHODS)} or a table of its fields, "
        f"got {type(value).__name__}"
    )


def speculative_overrides(
    base: SpeculativeConfig | None, method: str | None, draft_model: str | None, num_draft_tokens: int | None
) -> SpeculativeConfig | None:
    """`base` with command-line choices applied (`--speculative`, `--draft-model`, `--num-draft-tokens`);
    `base` itself when none is given. A draft model alone implies method "draft"."""
    if method is None and draft_model is None and num_draft_tokens is None:
        return base
    changes: dict[str, Any] = {}
    if method is not None:
        changes["method"] = method
    elif draft_model is not None:
        changes["method"] = "draft"
    if draft_model is not None:
        changes["draft_model"] = draft_model
    if num_draft_tokens is not None:
        changes["num_draft_tokens"] = num_draft_tokens
    current = {f.name: getattr(base, f.name) for f in fields(SpeculativeConfig)} if base is not None else {}
    return SpeculativeConfig(**{**current, **changes})
