"""Compile the regular subset of a Lark grammar into one regular expression.

A custom tool's `format` may be a Lark grammar. Loom enforces a tool's format through the
JSON Schema `pattern` of its input (the embedded model turns it into GBNF; strict upstreams
check it), so a Lark grammar is enforced when it is regular: when no rule refers back to
itself, directly or not. Supported:

- rules (`name: ...`, `?name`, `!name`) and terminals (`NAME: ...`, `NAME.2: ...`), with
  alternatives (`|`, also on continuation lines), groups `( )`, optional `[ ]`, and `?`,
  `*`, `+`, `~n`, `~n..m`;
- literals `"..."` (and `"..."i`), ranges `"a".."z"`, regexes `/.../` (no flags);
- `%import common.NAME` for the usual terminals (NUMBER, INT, WORD, WS, LF, ...);
- `//` comments. The grammar starts at `start`.

Not supported, so not enforced (`LarkSubsetError` says which): recursion, `%ignore`,
`%declare`, templates, and imports from other grammars. Such a grammar is still shown to
the model in the tool's description.
"""

from __future__ import annotations

import ast
import re

COMMON = {
    "DIGIT": r"[0-9]",
    "HEXDIGIT": r"[a-fA-F0-9]",
    "INT": r"[0-9]+",
    "SIGNED_INT": r"[+-]?[0-9]+",
    "DECIMAL": r"([0-9]+\.[0-9]*|\.[0-9]+)",
    "NUMBER": r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?",
    "SIGNED_NUMBER": r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?",
    "LETTER": r"[A-Za-z]",
    "LCASE_LETTER": r"[a-z]",
    "UCASE_LETTER": r"[A-Z]",
    "WORD": r"[A-Za-z]+",
    "CNAME": r"[A-Za-z_][A-Za-z0-9_]*",
    "WS": r"[ \t\f\r\n]+",
    "WS_INLINE": r"[ \t]+",
    "LF": r"\n",
    "CR": r"\r",
    "NEWLINE": r"(\r?\n)+",
    "ESCAPED_STRING": r'"([^"\\]|\\.)*"',
}

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t]+)
  | (?P<string>"(?:[^"\\\n]|\\.)*"i?)
  | (?P<regex>/(?:[^/\\\n]|\\.)+/[is]*)
  | (?P<name>[?!]?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<range>\.\.)
  | (?P<repeat>~\s*[0-9]+(?:\s*\.\.\s*[0-9]+)?)
  | (?P<op>[|()\[\]?*+])
    """,
    re.VERBOSE,
)


class LarkSubsetError(ValueError):
    """The grammar is outside the regular subset Loom compiles."""


def _definitions(text: str) -> dict[str, str]:
    defs: dict[str, str] = {}
    current = None
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)//.*$", "", raw).rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("%import"):
            match = re.fullmatch(r"%import\s+common\.([A-Z_]+)(?:\s*->\s*([A-Z_]+))?", stripped)
            if not match or match[1] not in COMMON:
                raise LarkSubsetError(f"unsupported import: {stripped}")
            defs[match[2] or match[1]] = f"/{COMMON[match[1]]}/"
            continue
        if stripped.startswith("%"):
            raise LarkSubsetError(f"unsupported directive: {stripped.split()[0]}")
        head = re.match(r"([?!]?)([A-Za-z_][A-Za-z0-9_]*)(?:\.-?[0-9]+)?\s*:(.*)$", stripped)
        if head and not stripped.startswith("|"):
            current = head[2]
            defs[current] = head[3]
        elif stripped.startswith("|") and current is not None:
            defs[current] += " " + stripped
        else:
            raise LarkSubsetError(f"cannot read line: {stripped}")
    if "start" not in defs:
        raise LarkSubsetError("the grammar has no 'start' rule")
    return defs


class _Compiler:
    def __init__(self, defs: dict[str, str]):
        self.defs = defs
        self.done: dict[str, str] = {}
        self.active: list[str] = []

    def rule(self, name: str) -> str:
        if name in self.done:
            return self.done[name]
        if name in self.active:
            raise LarkSubsetError(
                f"rule '{name}' is recursive; a regular expression cannot express it"
            )
        if name not in self.defs:
            raise LarkSubsetError(f"'{name}' is used but not defined")
        self.active.append(name)
        tokens = [(m.lastgroup, m[0]) for m in _TOKEN.finditer(self.defs[name])]
        rest = _TOKEN.sub("", self.defs[name]).strip()
        if rest:
            raise LarkSubsetError(f"cannot read {rest!r} in '{name}'")
        tokens = [t for t in tokens if t[0] != "ws"]
        pattern, used = self._alternatives(tokens, 0, name)
        if used != len(tokens):
            raise LarkSubsetError(f"unbalanced brackets in '{name}'")
        self.active.pop()
        self.done[name] = pattern
        return pattern

    def _alternatives(self, tokens, i, name) -> tuple[str, int]:
        options = []
        while True:
            sequence, i = self._sequence(tokens, i, name)
            options.append(sequence)
            if i < len(tokens) and tokens[i][1] == "|":
                i += 1
                continue
            return (options[0] if len(options) == 1 else f"({'|'.join(options)})"), i

    def _sequence(self, tokens, i, name) -> tuple[str, int]:
        parts = []
        while i < len(tokens) and tokens[i][1] not in ("|", ")", "]"):
            atom, i = self._atom(tokens, i, name)
            while i < len(tokens) and (tokens[i][0] == "repeat" or tokens[i][1] in "?*+"):
                kind, text = tokens[i]
                if kind == "repeat":
                    low, _, high = text[1:].replace(" ", "").partition("..")
                    atom = f"({atom}){{{low},{high or low}}}"
                else:
                    atom = f"({atom}){text}"
                i += 1
            parts.append(atom)
        return "".join(parts), i

    def _atom(self, tokens, i, name) -> tuple[str, int]:
        kind, text = tokens[i]
        if kind == "op" and text in "([":
            inner, i = self._alternatives(tokens, i + 1, name)
            close = ")" if text == "(" else "]"
            if i >= len(tokens) or tokens[i][1] != close:
                raise LarkSubsetError(f"unbalanced '{text}' in '{name}'")
            return (f"({inner})" if text == "(" else f"({inner})?"), i + 1
        if kind == "string":
            literal = _literal(text)
            if i + 2 < len(tokens) and tokens[i + 1][0] == "range":
                end = _literal(tokens[i + 2][1])
                return f"[{_escape(literal)}-{_escape(end)}]", i + 3
            if text.endswith("i"):
                return "".join(_any_case(ch) for ch in literal), i + 1
            return _escape(literal), i + 1
        if kind == "regex":
            body, flags = text[1:].rsplit("/", 1)
            if flags:
                raise LarkSubsetError(f"regex flags /{flags} are not supported (in '{name}')")
            return f"({body})", i + 1
        if kind == "name":
            return f"({self.rule(text.lstrip('?!'))})", i + 1
        raise LarkSubsetError(f"unexpected {text!r} in '{name}'")


_META = set(".^$*+?()[]{}|\\/-")
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(literal: str) -> str:
    """A literal in the plain regex dialect both Python and llama.cpp's converter read."""
    return "".join(_CONTROL.get(ch) or (f"\\{ch}" if ch in _META else ch) for ch in literal)


def _any_case(ch: str) -> str:
    return f"[{ch.lower()}{ch.upper()}]" if ch.lower() != ch.upper() else _escape(ch)


def _literal(text: str) -> str:
    return ast.literal_eval(text[:-1] if text.endswith("i") else text)


def lark_to_regex(grammar: str) -> str:
    """The regular expression a (regular) Lark grammar describes, anchored; or
    LarkSubsetError saying which construct is outside the subset."""
    pattern = _Compiler(_definitions(grammar)).rule("start")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise LarkSubsetError(f"the grammar's regexes do not combine: {exc}") from None
    return f"^{pattern}$"
