"""Which rules of a Lark grammar can ever finish: the productivity fixed point over the rule structure.

llguidance accepts grammars whose language is empty (`start: "a" start`): the parser is happy with
every prefix, so decoding would run until the token budget and end incomplete. A rule is
*productive* when one of its alternatives consists of productive items only; strings, special
tokens, embedded `%json`/`%regex` blocks and imported terminals are productive, a regex terminal is
when it matches something, and `x?`, `x*`, `[x]`, `x{0,n}` always are. The grammar is satisfiable
only if `start` is productive.

The parser here reads the rule *structure* of llguidance's Lark dialect (rules, terminals,
alternatives, groups, repetition, `->` aliases, `%` directives); anything it does not recognise
makes `unproductive_rules` answer None ("unknown"), so an unusual grammar is never refused by
mistake.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["unproductive_rules"]

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+|\\\n)
  | (?P<comment>//[^\n]*|\#[^\n]*)
  | (?P<nl>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*"i?)
  | (?P<regex>/(?!/)(?:[^/\\\n]|\\.)+/[imslux]*)
  | (?P<special><\[[^\]\n]*\]>|<\|?[^<>\s]*\|?>)
  | (?P<directive>%[A-Za-z_]\w*)
  | (?P<arrow>->)
  | (?P<range>\.\.)
  | (?P<name>[?!]?[A-Za-z_][\w]*(?:\.-?\d+)?)
  | (?P<number>\d+)
  | (?P<op>[:|()\[\]?*+~{},&=])
    """,
    re.VERBOSE,
)


class _Unknown(Exception):
    """The grammar uses syntax this reader does not know; the check is skipped."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


# expression trees: ("alt", [seq...]), ("seq", [item...]), ("opt", e), ("plus", e), ("ref", name),
# ("regex", text), ("term",) for an always-productive atom
_Expr = tuple[object, ...]


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    at = 0
    while at < len(text):
        if text[at] == "{" and out and out[-1].kind == "directive":  # %json {...}, %llguidance {...}
            at = _skip_braces(text, at)
            out.append(_Tok("block", ""))
            continue
        found = _TOKEN.match(text, at)
        if found is None:
            raise _Unknown(text[at : at + 10])
        kind = found.lastgroup or ""
        if kind not in ("ws", "comment"):
            out.append(_Tok(kind, found.group()))
        at = found.end()
    return out


def _skip_braces(text: str, at: int) -> int:
    depth = 0
    in_string = False
    i = at
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Unknown("unclosed {")


class _Reader:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.at = 0

    def peek(self, offset: int = 0) -> _Tok | None:
        i = self.at + offset
        return self.toks[i] if i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise _Unknown("end of grammar")
        self.at += 1
        return tok

    def expect(self, text: str) -> None:
        if self.take().text != text:
            raise _Unknown(f"expected {text}")

    def skip_newlines(self) -> None:
        while (tok := self.peek()) is not None and tok.kind == "nl":
            self.at += 1

    def definition_starts(self) -> bool:
        """At a `name[.prio] [attrs]:` head."""
        tok = self.peek()
        if tok is None or tok.kind != "name":
            return False
        i = 1
        if (attrs := self.peek(i)) is not None and attrs.text == "[":
            while (t := self.peek(i)) is not None and t.text != "]":
                if t.kind == "nl":
                    return False
                i += 1
            i += 1
        colon = self.peek(i)
        return colon is not None and colon.text == ":"


def _parse(text: str) -> dict[str, _Expr]:
    reader = _Reader(_tokens(text))
    rules: dict[str, list[_Expr]] = {}
    while True:
        reader.skip_newlines()
        tok = reader.peek()
        if tok is None:
            break
        if tok.kind == "directive":  # %import, %ignore, %llguidance {...}: to the end of the line
            while (t := reader.peek()) is not None and t.kind != "nl":
                reader.at += 1
            continue
        if not reader.definition_starts():
            raise _Unknown(tok.text)
        name = reader.take().text.lstrip("?!").split(".")[0]
        if reader.peek() is not None and reader.peek().text == "[":  # type: ignore[union-attr]
            while reader.take().text != "]":
                pass
        reader.expect(":")
        rules.setdefault(name, []).append(_alternatives(reader, top=True))
    return {name: ("alt", bodies) for name, bodies in rules.items()}


def _alternatives(reader: _Reader, *, top: bool) -> _Expr:
    seqs = [_sequence(reader, top=top)]
    while True:
        tok = reader.peek()
        if top and tok is not None and tok.kind == "nl":
            nxt = reader.at
            reader.skip_newlines()
            if reader.peek() is not None and reader.peek().text == "|":  # type: ignore[union-attr]
                continue  # a continuation line
            reader.at = nxt
            return ("alt", seqs)
        if tok is not None and tok.text == "|":
            reader.take()
            seqs.append(_sequence(reader, top=top))
            continue
        return ("alt", seqs)


def _sequence(reader: _Reader, *, top: bool) -> _Expr:
    items: list[_Expr] = []
    while True:
        if not top:
            reader.skip_newlines()
        tok = reader.peek()
        if tok is None or tok.kind == "nl" or tok.text in ("|", ")", "]"):
            return ("seq", items)
        if tok.kind == "arrow":  # -> alias
            reader.take()
            reader.take()
            continue
        items.append(_repeated(reader, _atom(reader)))


def _atom(reader: _Reader) -> _Expr:
    tok = reader.take()
    if tok.text == "(":
        inner = _alternatives(reader, top=False)
        reader.expect(")")
        return inner
    if tok.text == "[":
        inner = _alternatives(reader, top=False)
        reader.expect("]")
        return ("opt", inner)
    if tok.kind == "string":
        if reader.peek() is not None and reader.peek().kind == "range":  # type: ignore[union-attr]
            reader.take()
            if reader.take().kind != "string":
                raise _Unknown("range")
        return ("term",)
    if tok.kind == "regex":
        return ("regex", tok.text)
    if tok.kind == "special":
        return ("term",)
    if tok.kind == "directive" and (block := reader.peek()) is not None and block.kind == "block":
        reader.take()
        return ("term",)
    if tok.kind == "name" and tok.text[0] not in "?!":
        return ("ref", tok.text)
    raise _Unknown(tok.text)


def _repeated(reader: _Reader, atom: _Expr) -> _Expr:
    while (tok := reader.peek()) is not None:
        if tok.text in ("?", "*"):
            reader.take()
            atom = ("opt", atom)
        elif tok.text == "+":
            reader.take()
        elif tok.text == "~":
            reader.take()
            low = int(reader.take().text)
            if reader.peek() is not None and reader.peek().kind == "range":  # type: ignore[union-attr]
                reader.take()
                reader.take()
            atom = ("opt", atom) if low == 0 else atom
        elif tok.text == "{":
            reader.take()
            low_tok = reader.take()
            low = 0 if low_tok.text == "," else int(low_tok.text)
            while reader.take().text != "}":
                pass
            atom = ("opt", atom) if low == 0 else atom
        elif tok.text == "&":
            raise _Unknown("&")  # an intersection of terminals may be empty; not judged here
        else:
            break
    return atom


def unproductive_rules(grammar: str, regex_matches_something: Callable[[str], bool]) -> list[str] | None:
    """The rules of the Lark `grammar` that derive no finite string, `start` first when it is one of
    them (then the grammar's language is empty); [] when `start` is productive; None when the
    grammar uses syntax this reader does not know. `regex_matches_something("/re/flags")` judges
    regex terminals."""
    try:
        rules = _parse(grammar)
    except (_Unknown, ValueError):
        return None
    if "start" not in rules:
        return None
    regex_cache: dict[str, bool] = {}

    def productive(expr: _Expr, known: set[str]) -> bool:
        kind = expr[0]
        if kind == "alt":
            return any(productive(seq, known) for seq in expr[1])  # type: ignore[attr-defined]
        if kind == "seq":
            return all(productive(item, known) for item in expr[1])  # type: ignore[attr-defined]
        if kind == "opt":
            return True
        if kind == "ref":
            name = str(expr[1])
            return name in known or name not in rules  # imported terminals (common.NUMBER) are productive
        if kind == "regex":
            text = str(expr[1])
            if text not in regex_cache:
                regex_cache[text] = regex_matches_something(text)
            return regex_cache[text]
        return True

    known: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, body in rules.items():
            if name not in known and productive(body, known):
                known.add(name)
                changed = True
    if "start" in known:
        return []
    dead = [name for name in rules if name not in known]
    return ["start", *[name for name in dead if name != "start"]]
