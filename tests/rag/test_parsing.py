"""Text extraction per format; a file that cannot be read raises ParseError."""

from __future__ import annotations

import pytest

from loom.rag.parsing import ParseError, extract_text
from tests.support.pdf import text_pdf


def test_formats():
    assert extract_text("a.txt", "naïve café\n".encode()) == "naïve café\n"
    assert extract_text("a.md", b"# Title\n\ntext") == "# Title\n\ntext"
    assert extract_text("a.json", b'{"k": 1}') == '{"k": 1}'
    assert extract_text("a.csv", b"a,b\n1,2\n") == "a,b\n1,2\n"
    html = b"<html><head><title>T</title><style>x{}</style></head><body><h1>Head</h1>"
    html += b"<p>One <i>two</i></p><script>no()</script><p>Three &amp; four</p></body></html>"
    assert extract_text("a.html", html) == "Head\nOne two\nThree & four"
    assert extract_text("scan.pdf", text_pdf("Tides follow the moon.")) == "Tides follow the moon."


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("broken.pdf", b"%PDF-1.7 truncated"),
        ("bad.json", b"{not json"),
        ("blob.bin", b"\x00\x01\x02"),
        ("latin1.txt", "café".encode("latin-1")),
    ],
)
def test_unreadable_files_raise_parse_error(name, data):
    with pytest.raises(ParseError):
        extract_text(name, data)
