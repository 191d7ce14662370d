"""Turn an uploaded file into plain text for chunking, by its name and content.

Plain text, Markdown, JSON, CSV and HTML (tags dropped, as text) and PDF (via `pypdf`).
Anything else is read as UTF-8 text if it is valid UTF-8 and fails otherwise. A file that
cannot be parsed raises `ParseError`, which fails that one file's ingestion, not its batch.
"""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path


class ParseError(ValueError):
    """The file's content cannot be read as text; the message says why."""


def extract_text(filename: str, data: bytes) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix == ".pdf" or data.startswith(b"%PDF-"):
        return _pdf(data)
    text = _utf8(data, filename)
    if suffix in (".html", ".htm"):
        return _html(text)
    if suffix == ".json":
        try:
            json.loads(text)
        except ValueError as exc:
            raise ParseError(f"{filename} is not valid JSON: {exc}") from None
    return text


def _utf8(data: bytes, filename: str) -> str:
    if b"\x00" in data[:8192]:
        raise ParseError(f"{filename} looks binary and is not a supported format")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{filename} is not UTF-8 text: {exc}") from None


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"the PDF cannot be read: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise ParseError("the PDF has no extractable text")
    return text


class _TextOfHtml(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "template"})
    _BREAK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html(text: str) -> str:
    parser = _TextOfHtml()
    parser.feed(text)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
