"""The README's table of create parameters is the one `engine/params.py` renders."""

from __future__ import annotations

from pathlib import Path

from loom.engine.params import readme_section

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_matches_the_mapping():
    text = README.read_text()
    begin, end = "<!-- params:begin -->\n", "<!-- params:end -->"
    assert begin in text and end in text
    shown = text[text.index(begin) + len(begin) : text.index(end)]
    assert shown == readme_section(), (
        "README.md is out of date: paste the output of `python -m loom.engine.params`"
    )
