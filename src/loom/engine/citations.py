"""Turn a model's `<|file-id|>` citation markers into `file_citation` annotations.

The file_search tool output asks the model to cite a hit by writing `<|file-id|>` at the
end of the sentence (see tools/file_search.py). The rule for what becomes a citation:

1. A marker naming a file that this turn's (or the history's) searches returned is removed
   from the text, together with the whitespace before it, and becomes an annotation whose
   `index` is the position in the cleaned text where it stood (OpenAI: "the index in the
   output text at which to insert the file citation").
2. A marker naming any other id is left in the text as the model wrote it: nothing
   invented is cited.
3. A returned file that no marker cites, but whose filename the answer mentions, is cited
   at the end of its first mention.

`CitationStream` applies rule 1-2 to streamed deltas, holding back only a possible marker
(and the whitespace before it) until it is complete, so the deltas a client sees add up to
the cleaned text. `with_markers` does the reverse for history: the model reads its earlier
answers with the markers it wrote.
"""

from __future__ import annotations

from typing import Any

_OPEN, _CLOSE = "<|", "|>"
_MAX_MARKER = 128  # longer than any file id: a "<|" this far from "|>" is plain text

Annotation = dict[str, Any]


def citation(file_id: str, filename: str, index: int) -> Annotation:
    return {"type": "file_citation", "file_id": file_id, "filename": filename, "index": index}


class CitationStream:
    def __init__(self, files: dict[str, str]):
        self._files = files  # file id → filename, the citable files
        self._held = ""  # text not yet emitted: trailing whitespace or a possible marker
        self._length = 0  # characters emitted so far
        self.annotations: list[Annotation] = []
        self._cited: set[str] = set()

    def feed(self, delta: str) -> tuple[str, list[Annotation]]:
        """The text to emit now and the annotations it completes."""
        buf = self._held + delta
        out: list[str] = []
        added: list[Annotation] = []
        while True:
            start = buf.find(_OPEN)
            if start == -1:
                split = len(buf) - 1 if buf.endswith("<") else len(buf)  # "<": maybe a marker
                keep = len(buf[:split].rstrip())
                self._emit(buf[:keep], out)
                self._held = buf[keep:]
                break
            end = buf.find(_CLOSE, start + 2)
            if end == -1:
                if len(buf) - start > _MAX_MARKER:  # not a marker: emit through the "<|"
                    self._emit(buf[: start + 2], out)
                    buf = buf[start + 2 :]
                    continue
                keep = len(buf[:start].rstrip())
                self._emit(buf[:keep], out)
                self._held = buf[keep:]
                break
            file_id = buf[start + 2 : end]
            before = buf[:start]
            if file_id in self._files:
                self._emit(before.rstrip(), out)
                annotation = citation(file_id, self._files[file_id], self._length)
                self.annotations.append(annotation)
                self._cited.add(file_id)
                added.append(annotation)
            else:
                self._emit(buf[: end + 2], out)
            buf = buf[end + 2 :]
        return "".join(out), added

    def _emit(self, text: str, out: list[str]) -> None:
        out.append(text)
        self._length += len(text)

    def finish(self, text_so_far: str) -> tuple[str, list[Annotation]]:
        """Flush what is held; cite mentioned filenames (rule 3). `text_so_far` is the
        cleaned text emitted before this call."""
        rest, self._held = self._held, ""
        self._length += len(rest)
        text = text_so_far + rest
        added = []
        for file_id, filename in self._files.items():
            if file_id in self._cited or not filename:
                continue
            at = text.find(filename)
            if at != -1:
                annotation = citation(file_id, filename, at + len(filename))
                self.annotations.append(annotation)
                self._cited.add(file_id)
                added.append(annotation)
        return rest, added


def with_markers(text: str, annotations: Any, citable: dict[str, str] | set[str]) -> str:
    """The text with ` <|file-id|>` put back where each file citation stands, for the files
    in `citable` (those a search returned: the citations made from the model's markers)."""
    cites = [
        a
        for a in annotations
        if isinstance(a, dict) and a.get("type") == "file_citation" and a.get("file_id") in citable
    ]
    if not cites:
        return text
    for annotation in sorted(cites, key=lambda a: a.get("index") or 0, reverse=True):
        at = min(max(int(annotation.get("index") or 0), 0), len(text))
        text = f"{text[:at]} <|{annotation['file_id']}|>{text[at:]}"
    return text
