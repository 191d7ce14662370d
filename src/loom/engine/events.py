"""Construct Responses stream events as plain dicts with a gap-free `sequence_number`.

Events are plain dicts because each is serialized exactly once on its way out; their
shapes are checked against the `openai` SDK types and the Open Responses schema in the
tests, not on every event in production.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]


class EventSequencer:
    """Numbers events from 0; one per response stream."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def emit(self, type_: str, **fields: Any) -> Event:
        event = {"type": type_, "sequence_number": self._next, **fields}
        self._next += 1
        return event

    # -- the response lifecycle ----------------------------------------------------------

    def response_event(self, type_: str, response: dict[str, Any]) -> Event:
        return self.emit(type_, response=response)

    # -- items -----------------------------------------------------------------------------

    def item_added(self, output_index: int, item: dict[str, Any]) -> Event:
        return self.emit("response.output_item.added", output_index=output_index, item=item)

    def item_done(self, output_index: int, item: dict[str, Any]) -> Event:
        return self.emit("response.output_item.done", output_index=output_index, item=item)

    def part_added(self, item_id: str, output_index: int, index: int, part: dict) -> Event:
        return self.emit(
            "response.content_part.added",
            item_id=item_id,
            output_index=output_index,
            content_index=index,
            part=part,
        )

    def part_done(self, item_id: str, output_index: int, index: int, part: dict) -> Event:
        return self.emit(
            "response.content_part.done",
            item_id=item_id,
            output_index=output_index,
            content_index=index,
            part=part,
        )

    def text_delta(
        self, item_id: str, output_index: int, delta: str, logprobs: list | None = None
    ) -> Event:
        return self.emit(
            "response.output_text.delta",
            item_id=item_id,
            output_index=output_index,
            content_index=0,
            delta=delta,
            logprobs=logprobs or [],
        )

    def text_done(
        self, item_id: str, output_index: int, text: str, logprobs: list | None = None
    ) -> Event:
        return self.emit(
            "response.output_text.done",
            item_id=item_id,
            output_index=output_index,
            content_index=0,
            text=text,
            logprobs=logprobs or [],
        )

    def reasoning_delta(self, item_id: str, output_index: int, delta: str) -> Event:
        return self.emit(
            "response.reasoning_text.delta",
            item_id=item_id,
            output_index=output_index,
            content_index=0,
            delta=delta,
        )

    def reasoning_done(self, item_id: str, output_index: int, text: str) -> Event:
        return self.emit(
            "response.reasoning_text.done",
            item_id=item_id,
            output_index=output_index,
            content_index=0,
            text=text,
        )

    def arguments_delta(self, kind: str, item_id: str, output_index: int, delta: str) -> Event:
        """`kind` is `function_call` or `mcp_call`: their argument events share a shape."""
        return self.emit(
            f"response.{kind}_arguments.delta",
            item_id=item_id,
            output_index=output_index,
            delta=delta,
        )

    def arguments_done(self, kind: str, item_id: str, output_index: int, args: str) -> Event:
        return self.emit(
            f"response.{kind}_arguments.done",
            item_id=item_id,
            output_index=output_index,
            arguments=args,
        )

    def custom_input_delta(self, item_id: str, output_index: int, delta: str) -> Event:
        return self.emit(
            "response.custom_tool_call_input.delta",
            item_id=item_id,
            output_index=output_index,
            delta=delta,
        )

    def custom_input_done(self, item_id: str, output_index: int, text: str) -> Event:
        return self.emit(
            "response.custom_tool_call_input.done",
            item_id=item_id,
            output_index=output_index,
            input=text,
        )
