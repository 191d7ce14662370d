"""The parts of one streamed `reasoning` item: its reasoning text, its summaries, and the
opaque `encrypted_content` an upstream may attach.

Chat upstreams stream reasoning as `reasoning_content` (or `reasoning`) text deltas; some
(OpenRouter's format) send `reasoning_details` entries instead, typed `reasoning.text`,
`reasoning.summary` or `reasoning.encrypted`. Text becomes the item's `reasoning_text`
content part (`response.reasoning_text.*` events), summaries its `summary_text` parts
(`response.reasoning_summary_part.*` / `response.reasoning_summary_text.*`), and encrypted
data its `encrypted_content`, which clients hand back so the upstream can read it again.
A part opens at its first delta and closes when the other kind starts or the item ends.
"""

from __future__ import annotations

from typing import Any

from loom.engine.events import Event, EventSequencer


class ReasoningParts:
    __slots__ = (
        "_index",
        "_item",
        "_open",
        "_seq",
        "_summaries",
        "_text",
        "encrypted",
        "text_closed",
    )

    def __init__(self, seq: EventSequencer, item: dict[str, Any], output_index: int):
        self._seq = seq
        self._item = item
        self._index = output_index
        self._open: str | None = None  # "text" | "summary"
        self._text: list[str] = []
        self._summaries: list[list[str]] = []
        self.text_closed = False
        self.encrypted: list[str] = []

    def text(self, delta: str, events: list[Event]) -> None:
        """Add reasoning text; the caller starts a new item once `text_closed` is true."""
        if self._open == "summary":
            self._close_part(events)
        if self._open is None:
            part = {"type": "reasoning_text", "text": ""}
            events.append(self._seq.part_added(self._item["id"], self._index, 0, part))
            self._open = "text"
        self._text.append(delta)
        events.append(self._seq.reasoning_delta(self._item["id"], self._index, delta))

    def summary(self, delta: str, events: list[Event]) -> None:
        if self._open == "text":
            self._close_part(events)
        item_id = self._item["id"]
        if self._open is None:
            self._summaries.append([])
            part = {"type": "summary_text", "text": ""}
            events.append(self._seq.emit(
                "response.reasoning_summary_part.added",
                item_id=item_id, output_index=self._index,
                summary_index=len(self._summaries) - 1, part=part,
            ))  # fmt: skip
            self._open = "summary"
        self._summaries[-1].append(delta)
        events.append(self._seq.emit(
            "response.reasoning_summary_text.delta",
            item_id=item_id, output_index=self._index,
            summary_index=len(self._summaries) - 1, delta=delta,
        ))  # fmt: skip

    def _close_part(self, events: list[Event]) -> None:
        item_id = self._item["id"]
        if self._open == "text":
            text = "".join(self._text)
            events.append(self._seq.reasoning_done(item_id, self._index, text))
            part = {"type": "reasoning_text", "text": text}
            events.append(self._seq.part_done(item_id, self._index, 0, part))
            self.text_closed = True
        elif self._open == "summary":
            index = len(self._summaries) - 1
            text = "".join(self._summaries[-1])
            common = {"item_id": item_id, "output_index": self._index, "summary_index": index}
            events.append(
                self._seq.emit("response.reasoning_summary_text.done", **common, text=text)
            )
            part = {"type": "summary_text", "text": text}
            events.append(
                self._seq.emit("response.reasoning_summary_part.done", **common, part=part)
            )
        self._open = None

    def close(self, events: list[Event]) -> None:
        """Close the open part and fill the item's `content`, `summary`, `encrypted_content`."""
        self._close_part(events)
        item = self._item
        if self._text:
            item["content"] = [{"type": "reasoning_text", "text": "".join(self._text)}]
        item["summary"] = [{"type": "summary_text", "text": "".join(s)} for s in self._summaries]
        if self.encrypted:
            item["encrypted_content"] = "".join(self.encrypted)
