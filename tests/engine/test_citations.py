"""`<|file-id|>` markers → file_citation annotations, streamed, and back for history."""

from __future__ import annotations

import random

from loom.engine.citations import CitationStream, with_markers

FILES = {"file-a1": "us_marketing_q1.txt", "file-b2": "eu_marketing_q1.txt"}
ANSWER = (
    "Revenue grew 15% in the US <|file-a1|>. Europe grew strongly <|file-b2|>."
    " A made-up one <|file-zz|> stays."
)
CLEAN = "Revenue grew 15% in the US. Europe grew strongly. A made-up one <|file-zz|> stays."


def _stream(pieces: list[str], files=FILES) -> tuple[str, list[dict]]:
    stream = CitationStream(files)
    text, events = "", []
    for piece in pieces:
        out, added = stream.feed(piece)
        text += out
        events += added
    rest, added = stream.finish(text)
    text += rest
    events += added
    assert events == stream.annotations
    return text, stream.annotations


def test_markers_of_returned_files_become_annotations_at_their_position():
    text, annotations = _stream([ANSWER])
    assert text == CLEAN
    first, second = len("Revenue grew 15% in the US"), CLEAN.index(". A made-up")
    assert annotations == [
        {
            "type": "file_citation",
            "file_id": "file-a1",
            "filename": FILES["file-a1"],
            "index": first,
        },
        {
            "type": "file_citation",
            "file_id": "file-b2",
            "filename": FILES["file-b2"],
            "index": second,
        },
    ]


def test_any_split_of_the_deltas_gives_the_same_text_and_annotations():
    expected = _stream([ANSWER])
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(1, 30)))
        pieces = [ANSWER[i:j] for i, j in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        assert _stream(pieces) == expected
    assert _stream(list(ANSWER)) == expected


def test_history_gets_the_markers_back():
    text, annotations = _stream([ANSWER])
    assert with_markers(text, annotations, FILES) == ANSWER
    assert with_markers(text, annotations, {"file-a1"}) == ANSWER.replace(" <|file-b2|>", "")


def test_a_mentioned_filename_is_cited_at_the_end_of_the_mention():
    text, annotations = _stream(["See eu_marketing_q1.txt for details."])
    assert text == "See eu_marketing_q1.txt for details."
    assert annotations == [
        {"type": "file_citation", "file_id": "file-b2", "filename": FILES["file-b2"], "index": 23}
    ]


def test_text_with_angle_brackets_that_is_no_marker_passes_through():
    text = "a < b and c <| not closed for a long while " + "x" * 200 + " end <"
    assert _stream([text[:50], text[50:]]) == (text, [])
    assert _stream(["no citations here"], files={}) == ("no citations here", [])
