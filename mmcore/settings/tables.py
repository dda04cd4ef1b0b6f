"""The core's settings tables: `[plugins]`, `[generation]` (with `[generation.speculative]`) and
`[serve]`, one pydantic model each. `load_config` validates with them and `config_schema` is
built from their JSON Schemas, so the two cannot disagree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from mmcore.settings import Settings, validate_table

__all__ = ["PluginsTable", "GenerationTable", "SpeculativeTable", "ServeSettings", "TOP_LEVEL_SCHEMA"]

Name = Annotated[str, Field(min_length=1)]


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must be -1 (no limit) or a positive integer")
    return value


#: -1 (no limit) or a positive integer.
Limit = Annotated[
    int,
    Field(ge=-1, json_schema_extra={"not": {"const": 0}}, description="-1 (no limit) or a positive integer"),
    AfterValidator(_not_zero),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class PluginsTable(Settings):
    """`[plugins]`: which installed plugins load."""

    allow: list[Name] | None = Field(
        default=None, description="load only these plugins (entry-point or distribution names)"
    )
    block: list[Name] = Field(default_factory=list, description="never load these plugins")


class SpeculativeTable(Settings):
    """`[generation.speculative]`: `mmcore.speculative.SpeculativeConfig`'s fields."""

    method: Literal["ngram", "draft", "off"] = Field(default="ngram", description="ngram (prompt lookup), draft or off")
    draft_model: Name | None = Field(default=None, description="the draft .pte (method 'draft')")
    num_draft_tokens: int = Field(default=8, ge=1, description="most draft tokens verified per decoder call")
    max_ngram: int = Field(default=3, ge=1, description="longest suffix looked up")
    min_ngram: int = Field(default=1, ge=1, description="shortest suffix looked up")
    adaptive: bool = Field(default=True, description="adapt k and switch off while speculation does not pay")

    @model_validator(mode="after")
    def _consistent(self) -> SpeculativeTable:
        if self.method == "draft" and self.draft_model is None:
            raise ValueError("method 'draft' needs draft_model, the path of a smaller .pte with the same tokenizer")
        if self.min_ngram > self.max_ngram:
            raise ValueError(f"min_ngram ({self.min_ngram}) must not exceed max_ngram ({self.max_ngram})")
        return self


def _method_name(value: Any) -> Any:
    return {"method": value} if isinstance(value, str) else value


Speculative = Annotated[
    SpeculativeTable | None,
    BeforeValidator(_method_name),
    WithJsonSchema(
        {
            "description": "speculative decoding: a method name or a table of SpeculativeConfig's fields",
            "anyOf": [
                {"type": "string", "enum": ["ngram", "draft", "off"]},
                {**SpeculativeTable.model_json_schema(), "title": "SpeculativeTable"},
            ],
        }
    ),
]


class GenerationTable(Settings):
    """`[generation]`: `mmcore.GenerationConfig`'s fields (see its docstring for each)."""

    echo: bool = Field(default=True, description="stream the prompt text first")
    max_new_tokens: Limit = Field(default=-1, description="cap on emitted tokens, the first included (-1: none)")
    seq_len: Limit = Field(default=-1, description="cap on total positions (-1: the context)")
    temperature: FiniteFloat = Field(default=0.8, ge=0, description="0 = greedy")
    top_k: int = Field(default=0, ge=0, description="sample among the k most likely tokens; 0 = no limit")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus mass in (0, 1]")
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="sampler seed (none: random)")
    num_bos: int = Field(default=0, ge=0, description="BOS tokens before the first text of a conversation")
    num_eos: int = Field(default=0, ge=0, description="EOS tokens after the first text of a conversation")
    ignore_eos: bool = Field(default=False, description="keep generating past EOS")
    stop: list[Name] = Field(default_factory=list, description="stop strings (never part of the output)")
    warming: bool = Field(default=False, description="warm-up run: no stats callback")
    repetition_penalty: FiniteFloat = Field(default=1.0, gt=0, description="> 1 discourages repeated tokens; 1 = off")
    frequency_penalty: FiniteFloat = Field(default=0.0, description="subtracted per earlier occurrence; 0 = off")
    presence_penalty: FiniteFloat = Field(default=0.0, description="subtracted once a token occurred; 0 = off")
    logprobs: bool = Field(default=False, description="report each generated token's log-probability")
    top_logprobs: int = Field(
        default=0, ge=0, le=20, description="also report the k most likely alternatives (implies logprobs)"
    )
    speculative: Speculative = Field(default=None, description="speculative decoding")
    response_format: dict[str, Any] | None = Field(
        default=None, description="constrain the answer (OpenAI response_format; see docs/structured-output.md)"
    )

    def changes(self) -> dict[str, Any]:
        """The keys the table set, as `GenerationConfig.replace` arguments."""
        values: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "stop":
                value = tuple(value)
            elif isinstance(value, SpeculativeTable):
                value = value.model_dump()
            values[name] = value
        return values


class ServeSettings(Settings):
    """`[serve]`: how `mmcore serve` serves (command-line flags override these).

    Fields:
        host: the address to listen on.
        port: the TCP port (0: any free port; the log says which).
        model_id: the id clients name in ``model`` (default: the program's file stem).
        api_key: when set, requests need ``Authorization: Bearer <api_key>``.
        parallel: slots (runners with their own KV cache) serving requests at once.
        max_queue: requests that may wait for a slot; more get a 429.
        media_dir: local media paths and ``file://`` URLs are allowed only inside this folder.
        prefix_cache: reuse each slot's cached conversation prefix (off: prefill every request whole).
        tool_parser: the tool-call format (default: the adapter family's).
        max_body_mb: the largest request body, in MiB (413 beyond).
        request_timeout: seconds a request may take from its arrival (queue wait included); past
            it its generation stops, its slot is freed and it fails with a 504 (none: no limit).
    """

    host: Name = Field(default="127.0.0.1", description="the address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="the TCP port (0: any free port)")
    model_id: Name | None = Field(
        default=None, description="the model id clients send (default: the program's file stem)"
    )
    api_key: Name | None = Field(default=None, description="require 'Authorization: Bearer KEY'")
    parallel: int = Field(default=1, ge=1, description="slots serving requests at once, each its own KV cache")
    max_queue: int = Field(default=64, ge=0, description="requests that may wait for a slot (more get 429)")
    media_dir: Annotated[Path | None, Field(strict=False)] = Field(
        default=None, description="allow local media paths and file:// URLs inside this folder"
    )
    prefix_cache: bool = Field(default=True, description="reuse each slot's cached conversation prefix")
    tool_parser: Literal["hermes", "mistral"] | None = Field(
        default=None, description="tool-call format (default: the family's)"
    )
    max_body_mb: FiniteFloat = Field(default=32.0, gt=0, description="the largest request body, in MiB")
    request_timeout: FiniteFloat | None = Field(
        default=None, gt=0, description="seconds a request may take, queue wait included (504 beyond; none: no limit)"
    )

    @classmethod
    def from_table(cls, table: Any, base: Path | None = None) -> ServeSettings:
        """Settings from a ``[serve]`` table (relative `media_dir` taken from `base`)."""
        settings = validate_table(cls, table, "serve")
        if settings.media_dir is not None:
            media = settings.media_dir.expanduser()
            return settings.model_copy(
                update={"media_dir": media if media.is_absolute() else (base or Path.cwd()) / media}
            )
        return settings

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with the given (non-None) fields changed, validated again."""
        values = {**self.model_dump(), **{k: v for k, v in changes.items() if v is not None}}
        return validate_table(type(self), values, "serve")


#: JSON Schema of the top-level path keys.
TOP_LEVEL_SCHEMA: dict[str, Any] = {
    "program": {"type": "string", "minLength": 1, "description": "path of the .pte program"},
    "tokenizer": {
        "type": "string",
        "minLength": 1,
        "description": "tokenizer file or directory (default: the program's folder)",
    },
    "data_path": {"type": "string", "minLength": 1, "description": "external weights (.ptd)"},
}


def generation_fields_match(config_type: type) -> list[str]:
    """Field names `GenerationTable` and the dataclass `config_type` do not share (empty when in step)."""
    table = set(GenerationTable.model_fields)
    names = {f.name for f in dataclasses.fields(config_type)}
    return sorted(table ^ names)
