"""The llguidance adapter: response formats as llguidance grammars, mmcore tokenizers as `LLTokenizer`s."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from mmcore.errors import ConstraintError
from mmcore.structured.formats import ResponseFormat
from mmcore.structured.productive import unproductive_rules
from mmcore.tokenizer import Tokenizer

if TYPE_CHECKING:
    import llguidance

__all__ = ["grammar_of", "check_format", "build_lltokenizer", "new_matcher", "one_line"]

_INSTALL = "install the structured-output extra: pip install 'mmcore[structured]'"


def _library() -> Any:
    try:
        import llguidance
    except ImportError:
        raise ConstraintError(f"constrained decoding needs the llguidance package; {_INSTALL}") from None
    return llguidance


def one_line(message: str) -> str:
    """A library message folded onto one line."""
    return re.sub(r"\s+", " ", message).strip()


def grammar_of(fmt: ResponseFormat) -> str:
    """The llguidance grammar (its JSON form) of a response format."""
    lib = _library()
    if fmt.kind in ("json_object", "json_schema"):
        try:
            return str(lib.LLMatcher.grammar_from_json_schema(fmt.source))
        except ValueError as exc:
            raise ConstraintError(f"response_format {fmt.describe()}: {one_line(str(exc))}") from None
    if fmt.kind == "regex":
        return str(lib.LLMatcher.grammar_from_regex(fmt.source))
    text = fmt.source
    if fmt.syntax == "gbnf":
        from llguidance.gbnf_to_lark import gbnf_to_lark

        try:
            text = gbnf_to_lark(text)
        except Exception as exc:  # noqa: BLE001 - the converter raises plain exceptions on bad input
            raise ConstraintError(f"response_format grammar (gbnf): {one_line(str(exc))}") from None
    return str(lib.LLMatcher.grammar_from_lark(text))


def check_format(fmt: ResponseFormat, tokenizer: llguidance.LLTokenizer | None = None) -> str:
    """The grammar of `fmt` after llguidance validated it; `ConstraintError` (one line) naming the
    problem (bad syntax, unsupported keyword, a schema that can never be satisfied) otherwise."""
    grammar = grammar_of(fmt)
    is_error, messages = _library().LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise ConstraintError(f"response_format {fmt.describe()} is not usable: {one_line(messages[0])}")
    _check_satisfiable(fmt, grammar)
    return grammar


def _byte_tokenizer() -> llguidance.LLTokenizer:
    """llguidance's 256-byte vocabulary: a format no byte string satisfies fails with every tokenizer."""
    global _BYTES
    if _BYTES is None:
        _BYTES = _library().LLTokenizer("byte")
    return _BYTES


_BYTES: llguidance.LLTokenizer | None = None


def _dead_at_start(grammar: str) -> bool:
    """Whether the byte-level matcher of `grammar` allows neither a byte nor EOS at the start (its
    language is empty). False when llguidance cannot build it (then other checks report why)."""
    lib = _library()
    tokenizer = _byte_tokenizer()
    matcher = lib.LLMatcher(tokenizer, grammar, log_level=0, limits=lib.LLParserLimits(verbose_errors=False))
    if matcher.is_error():
        return False
    bits = bytearray(4 * ((int(tokenizer.vocab_size) + 31) // 32))
    holder = (ctypes.c_char * len(bits)).from_buffer(bits)
    matcher.unsafe_compute_mask_ptr(ctypes.addressof(holder), len(bits))
    error = str(matcher.get_error()) if matcher.is_error() else ""
    return error.startswith("NoExtension") or not any(bits)


def _regex_matches_something(regex: str) -> bool:
    """Whether a Lark regex terminal (`/re/flags`) matches at least one string."""
    try:
        return not _dead_at_start(str(_library().LLMatcher.grammar_from_lark(f"start: {regex}")))
    except Exception:  # noqa: BLE001 - an odd terminal is judged by llguidance itself, never refused here
        return True


def _check_satisfiable(fmt: ResponseFormat, grammar: str) -> None:
    """`ConstraintError` when no answer can satisfy `fmt`: a regex or schema whose language is empty,
    or a grammar whose start rule derives no finite string (checked before any decoding)."""
    what = f"response_format {fmt.describe()}"
    if fmt.kind == "grammar":
        dead = unproductive_rules(_lark_text(fmt), _regex_matches_something)
        if dead:
            start = "root" if fmt.syntax == "gbnf" else "start"  # gbnf_to_lark renames root to start
            names = [start if name == "start" else name for name in dead]
            rules = ", ".join(repr(name) for name in names[:6])
            raise ConstraintError(
                f"{what} ({fmt.syntax}) cannot be satisfied: rule {start!r} never derives a finite string "
                f"(rules that never finish: {rules}); give each recursive rule an alternative that does not "
                f'recurse (e.g. {start}: "a" {start} | "a") and make every terminal match some text'
            )
    if _dead_at_start(grammar):
        fix = {"regex": "fix the pattern", "grammar": "fix its terminals"}.get(fmt.kind, "relax the schema")
        raise ConstraintError(f"{what} cannot be satisfied: it matches no text at all; {fix}")


def _lark_text(fmt: ResponseFormat) -> str:
    if fmt.syntax == "gbnf":
        from llguidance.gbnf_to_lark import gbnf_to_lark

        return str(gbnf_to_lark(fmt.source))
    return fmt.source


class _TokenizerView:
    """What llguidance's `TokenizerWrapper` reads: token bytes, BOS/EOS, special ids and an encoder."""

    def __init__(self, tokenizer: Tokenizer, table: Sequence[bytes], special: Collection[int], eos_id: int) -> None:
        self._tokenizer = tokenizer
        self.tokens = list(table)
        self.special_token_ids = sorted(special)
        self.eos_token_id = eos_id
        self.bos_token_id = tokenizer.bos_id
        self._ids: dict[bytes, int] = {}
        for i, piece in enumerate(self.tokens):
            if piece and i not in special:
                self._ids.setdefault(piece, i)
        self._longest = max(map(len, self._ids), default=1)

    def __call__(self, text: bytes) -> list[int]:
        """Ids spelling exactly `text`: the tokenizer's own encoding when it does (it may not: a
        SentencePiece-style tokenizer adds a dummy-prefix space), else longest-match pieces."""
        ids = self._tokenizer.encode(text.decode("utf-8", errors="replace"))
        if b"".join(self.tokens[i] for i in ids) == text:
            return ids
        return self._longest_match(text)

    def _longest_match(self, text: bytes) -> list[int]:
        ids: list[int] = []
        at = 0
        while at < len(text):
            for size in range(min(self._longest, len(text) - at), 0, -1):
                found = self._ids.get(text[at : at + size])
                if found is not None:
                    ids.append(found)
                    at += size
                    break
            else:
                at += 1  # no token spells this byte, so no answer can hold it (raising would abort llguidance)
        return ids


def build_lltokenizer(tokenizer: Tokenizer, eos_ids: Collection[int]) -> llguidance.LLTokenizer:
    """An `LLTokenizer` over the byte vocabulary of any mmcore tokenizer that offers
    `byte_vocabulary()` (every mmcore-text tokenizer does); `eos_ids` end a constrained answer."""
    lib = _library()
    vocabulary = getattr(tokenizer, "byte_vocabulary", None)
    if not callable(vocabulary):
        raise ConstraintError(
            f"{type(tokenizer).__name__} does not expose its token bytes (byte_vocabulary()), so constrained "
            "decoding cannot map tokens to text; use an mmcore-text tokenizer or add byte_vocabulary()"
        )
    if not eos_ids:
        raise ConstraintError(
            "constrained decoding needs an end-of-sequence id to end a complete answer, and neither the "
            "program nor the tokenizer names one; export the program with its EOS ids or use a tokenizer with one"
        )
    table, special = vocabulary()
    eos = sorted(eos_ids)
    view = _TokenizerView(tokenizer, table, set(special) | set(eos), eos[0])
    try:
        made: llguidance.LLTokenizer = lib.LLTokenizer(lib.TokenizerWrapper(view), n_vocab=len(table), eos_token=eos)
        return made
    except Exception as exc:  # noqa: BLE001 - llguidance raises ValueError/RuntimeError on bad vocabularies
        raise ConstraintError(
            f"llguidance cannot use the vocabulary of {type(tokenizer).__name__}: {one_line(str(exc))}"
        ) from None


def new_matcher(tokenizer: llguidance.LLTokenizer, grammar: str, fmt: ResponseFormat) -> llguidance.LLMatcher:
    """A matcher in its start state; `ConstraintError` if llguidance rejects the grammar."""
    lib = _library()
    limits = lib.LLParserLimits(verbose_errors=False)
    matcher: llguidance.LLMatcher = lib.LLMatcher(tokenizer, grammar, log_level=0, limits=limits)
    if matcher.is_error():
        raise ConstraintError(f"response_format {fmt.describe()} is not usable: {one_line(matcher.get_error())}")
    return matcher
