"""Compiling response formats for one tokenizer; a compiled `Constraint` starts one `TokenMask` per answer."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from mmcore.errors import ConstraintError
from mmcore.structured import _llguidance
from mmcore.structured.formats import ResponseFormat, parse_response_format
from mmcore.structured.mask import TokenMask
from mmcore.tokenizer import Tokenizer

if TYPE_CHECKING:
    import llguidance

__all__ = ["Constraint", "ConstraintCompiler", "check_response_format"]

_CACHE_SIZE = 32


def check_response_format(value: Any) -> ResponseFormat | None:
    """`value` parsed (see `parse_response_format`) and validated by the library without a tokenizer:
    a bad schema, an unsupported keyword or an unsatisfiable schema raises `ConstraintError` here."""
    fmt = parse_response_format(value)
    if fmt is not None:
        _llguidance.check_format(fmt)
    return fmt


class Constraint:
    """A response format compiled against one vocabulary."""

    def __init__(
        self, fmt: ResponseFormat, matcher: llguidance.LLMatcher, width: int, vocab_size: int, eos_ids: frozenset[int]
    ) -> None:
        self.format = fmt
        self._template = matcher  # never advanced; each answer gets a copy
        self._width = width
        self._vocab_size = vocab_size
        self._eos_ids = eos_ids

    def start(self) -> TokenMask:
        """The mask of a new answer, filled for its first token."""
        return TokenMask(self._template.deep_copy(), self.format, self._width, self._vocab_size, self._eos_ids)


class ConstraintCompiler:
    """Compiles response formats for `tokenizer` and logits `width` ids wide, keeping the last
    compiled ones. The library's view of the vocabulary is built on first use."""

    def __init__(self, tokenizer: Tokenizer, eos_ids: Collection[int], width: int) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(eos_ids)
        self.width = width
        self._lltokenizer: llguidance.LLTokenizer | None = None
        self._compiled: OrderedDict[ResponseFormat, Constraint] = OrderedDict()
        self.last_compile_s = 0.0  # seconds the last compile took (0 when it came from the cache)

    def compile(self, value: ResponseFormat | Any) -> Constraint:
        """The compiled constraint of a response format (a `ResponseFormat` or an OpenAI-style dict).

        Raises `ConstraintError` (one line) before any decoding when the format is malformed, uses
        unsupported features, or allows no first token with this vocabulary.
        """
        fmt = parse_response_format(value)
        if fmt is None:
            raise ConstraintError("response_format {'type': 'text'} is no constraint; pass None instead")
        cached = self._compiled.get(fmt)
        if cached is not None:
            self._compiled.move_to_end(fmt)
            self.last_compile_s = 0.0
            return cached
        began = time.perf_counter()
        tokenizer = self.lltokenizer()
        grammar = _llguidance.check_format(fmt, tokenizer)
        matcher = _llguidance.new_matcher(tokenizer, grammar, fmt)
        constraint = Constraint(fmt, matcher, self.width, int(tokenizer.vocab_size), self.eos_ids)
        constraint.start()  # a format no first token satisfies fails now, not mid-answer
        self.last_compile_s = time.perf_counter() - began
        self._compiled[fmt] = constraint
        if len(self._compiled) > _CACHE_SIZE:
            self._compiled.popitem(last=False)
        return constraint

    def lltokenizer(self) -> llguidance.LLTokenizer:
        """The library's view of the vocabulary (built once)."""
        if self._lltokenizer is None:
            built = _llguidance.build_lltokenizer(self.tokenizer, self.eos_ids)
            if int(built.vocab_size) > self.width:
                raise ConstraintError(
                    f"the tokenizer has {built.vocab_size} ids but the program's logits cover only {self.width}"
                )
            self._lltokenizer = built
        return self._lltokenizer
