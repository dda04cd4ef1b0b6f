"""Structured output: decoding constrained to a JSON Schema, any JSON object, a regex or a grammar.

A `ResponseFormat` (from `GenerationConfig(response_format=...)`) is compiled by a
`ConstraintCompiler` against the runner's tokenizer into a `Constraint`; each answer starts a
`TokenMask`, which the sampler (and the native greedy loop, as a bitmask) applies before every
token. The masks come from llguidance (see docs/structured-output.md for why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore._lazy import lazy_getattr
from mmcore.structured.formats import ResponseFormat, parse_response_format

if TYPE_CHECKING:
    from mmcore.structured.constraint import Constraint, ConstraintCompiler, check_response_format
    from mmcore.structured.mask import TokenMask

__all__ = [
    "Constraint",
    "ConstraintCompiler",
    "ResponseFormat",
    "TokenMask",
    "check_response_format",
    "parse_response_format",
]

# The formats are imported eagerly (`mmcore.config` needs them); the mask machinery (numpy, the
# constraint library) on first use, so the command's start-up does not load it.
_LAZY = {
    "Constraint": "constraint",
    "ConstraintCompiler": "constraint",
    "check_response_format": "constraint",
    "TokenMask": "mask",
}


__getattr__ = lazy_getattr("mmcore.structured", _LAZY)
