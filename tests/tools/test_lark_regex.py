"""The regular subset of Lark, compiled to one regex (unit tests of tools/lark_regex.py)."""

from __future__ import annotations

import re

import pytest

from loom.tools.lark_regex import LarkSubsetError, lark_to_regex

SQL = r"""
// a tiny SELECT
start: "SELECT " column ("," column)* " FROM " TABLE [" LIMIT " INT]
column: /[a-z_]+/
    | "*"
TABLE.2: "users" | "orders"
%import common.INT
"""


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("SELECT a,b FROM users", True),
        ("SELECT * FROM orders LIMIT 5", True),
        ("SELECT FROM users", False),
        ("SELECT a FROM people", False),
        ("SELECT a FROM users LIMIT x", False),
    ],
)
def test_compiled_grammar_accepts_exactly_its_language(text, ok):
    assert bool(re.fullmatch(lark_to_regex(SQL), text)) is ok


def test_ranges_repeats_case_insensitive_literals_and_optionals():
    pattern = lark_to_regex('start: "a".."c"~2 ["-"] "ok"i NUMBER?\n%import common.NUMBER')
    for good in ("ab-OK", "ccok1.5", "aaOk"):
        assert re.fullmatch(pattern, good), good
    for bad in ("ad-ok", "a-ok", "abok-"):
        assert not re.fullmatch(pattern, bad), bad


def test_special_characters_in_literals_are_literal():
    pattern = lark_to_regex('start: "a.b*" "(x)" "\\n"')
    assert re.fullmatch(pattern, "a.b*(x)\n")
    assert not re.fullmatch(pattern, "aXbb(x)\n")


@pytest.mark.parametrize(
    ("grammar", "reason"),
    [
        ('start: expr\nexpr: "(" expr ")" | "x"', "recursive"),
        ('start: "x"\n%ignore " "', "directive"),
        ('start: "x"\n%import other.X', "import"),
        ('rule: "x"', "no 'start'"),
        ("start: missing", "not defined"),
        ("start: /x/i", "flags"),
        ('start: ("x"', "unbalanced"),
    ],
)
def test_what_is_outside_the_subset_is_named(grammar, reason):
    with pytest.raises(LarkSubsetError, match=reason):
        lark_to_regex(grammar)
