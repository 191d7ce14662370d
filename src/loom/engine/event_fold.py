"""Rebuild a background response's output from its stored event frames.

The stored response row is written when a background response is created and when it
ends; in between, `GET /v1/responses/{id}` shows the output so far by folding the event
log, and a replica that settles a response whose process died builds its final output
the same way. Folding runs only on those reads, never on the streaming path.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

Item = dict[str, Any]
TERMINAL_TYPES = (b"response.completed", b"response.incomplete", b"response.failed")


def frame_event(frame: bytes) -> dict[str, Any]:
    """The event a `event: <type>\\ndata: <json>\\n\\n` frame carries."""
    return orjson.loads(frame[frame.index(b"\ndata: ") + 7 :])


def is_terminal(frame: bytes) -> bool:
    """Whether a frame is a terminal event, read from its `event:` line alone."""
    return frame[7 : frame.index(b"\n")] in TERMINAL_TYPES


def fold_output(frames: list[bytes]) -> list[Item]:
    """The output items the events describe, partial items included as they stand."""
    items: dict[int, Item] = {}
    for frame in frames:
        event = frame_event(frame)
        kind = event["type"]
        index = event.get("output_index")
        if kind in ("response.output_item.added", "response.output_item.done"):
            items[index] = copy.deepcopy(event["item"])
        elif index not in items:
            continue
        elif kind == "response.content_part.added":
            items[index].setdefault("content", []).append(copy.deepcopy(event["part"]))
        elif kind in ("response.output_text.delta", "response.reasoning_text.delta"):
            parts = items[index].get("content") or []
            if event["content_index"] < len(parts):
                part = parts[event["content_index"]]
                part["text"] = part.get("text", "") + event["delta"]
        elif kind.endswith("_arguments.delta"):
            items[index]["arguments"] = items[index].get("arguments", "") + event["delta"]
    return [items[i] for i in sorted(items)]
