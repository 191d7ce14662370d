"""Check a Responses SSE stream against the event grammar, the SDK types and the spec.

Used by every streaming test. It checks:
- framing: `event: <type>` matches the data's `type`; `sequence_number` is 0, 1, 2, ...;
- `response.created`, then `response.in_progress`, then items, then exactly one terminal
  event (`response.completed`, `response.incomplete` or `response.failed`) at the end;
- each item: `output_item.added` → its inner events → `output_item.done`, never
  interleaved, output indexes in order; message and reasoning content-part events around
  their deltas; function / MCP argument deltas before their `done`; a file search's
  `in_progress` → `searching` → `completed` (no `completed` when it failed);
- a message's `output_text.annotation.added` events, numbered from 0, add up to the
  annotations of its final content part;
- concatenated deltas equal the `done` text, the item in `output_item.done`, and the
  item in the final Response's `output`;
- every event parses as the `openai` SDK's event type and validates against the Open
  Responses schema; the final Response validates against both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from tests.support.schemas import validate_event, validate_response

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def parse_sse(raw: bytes | str) -> list[tuple[str | None, dict[str, Any]]]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        events.append((name, orjson.loads("\n".join(data))))
    return events


class StreamError(AssertionError):
    pass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise StreamError(message)


def validate_stream(events: Iterable[tuple[str | None, dict[str, Any]] | dict[str, Any]]):
    """Validate a whole stream; return the final Response dict."""
    data = []
    for entry in events:
        if isinstance(entry, tuple):
            name, event = entry
            _check(name == event.get("type"), f"SSE event name {name} != data type")
        else:
            event = entry
        data.append(event)
    _check(len(data) >= 3, f"stream too short: {[e['type'] for e in data]}")
    for n, event in enumerate(data):
        _check(
            event.get("sequence_number") == n,
            f"event {n} has sequence {event.get('sequence_number')}",
        )
        validate_event(event)
    _check(data[0]["type"] == "response.created", "first event must be response.created")
    _check(data[1]["type"] == "response.in_progress", "second event must be response.in_progress")
    _check(data[-1]["type"] in TERMINAL, f"last event {data[-1]['type']} is not terminal")
    _check(sum(e["type"] in TERMINAL for e in data) == 1, "exactly one terminal event")
    response_id = data[0]["response"]["id"]
    for e in (data[1], data[-1]):
        _check(e["response"]["id"] == response_id, "response id changes within the stream")

    done_items: list[dict[str, Any]] = []
    i = 2
    body = data[2:-1]
    while i - 2 < len(body):
        event = body[i - 2]
        _check(
            event["type"] == "response.output_item.added",
            f"expected output_item.added, got {event['type']} (seq {event['sequence_number']})",
        )
        index = event["output_index"]
        _check(index == len(done_items), f"output_index {index}, expected {len(done_items)}")
        item = event["item"]
        inner = []
        i += 1
        while True:
            _check(i - 2 < len(body), f"item {item['id']} never got output_item.done")
            event = body[i - 2]
            i += 1
            if event["type"] == "response.output_item.done":
                break
            _check(
                event.get("output_index") == index
                and event.get("item_id", item["id"]) == item["id"],
                f"{event['type']} (seq {event['sequence_number']}) interleaves"
                f" with item {item['id']}",
            )
            inner.append(event)
        final = event["item"]
        _check(event["output_index"] == index and final["id"] == item["id"], "done item mismatch")
        _check(final["type"] == item["type"], "item type changed between added and done")
        _check_inner(final, [e["type"] for e in inner], inner)
        done_items.append(final)

    response = data[-1]["response"]
    _check(
        response["output"] == done_items,
        "final Response output differs from the items in output_item.done events",
    )
    status = {
        "response.completed": "completed",
        "response.incomplete": "incomplete",
        "response.failed": "failed",
    }[data[-1]["type"]]
    _check(
        response["status"] == status,
        f"terminal {data[-1]['type']} with status {response['status']}",
    )
    validate_response(response)
    return response


def _deltas(inner: list[dict[str, Any]], suffix: str) -> str:
    return "".join(e["delta"] for e in inner if e["type"].endswith(suffix))


def _check_inner(item: dict[str, Any], types: list[str], inner: list[dict[str, Any]]) -> None:
    kind = item["type"]
    if kind in ("message", "reasoning"):
        delta, done = (
            ("response.output_text.delta", "response.output_text.done")
            if kind == "message"
            else ("response.reasoning_text.delta", "response.reasoning_text.done")
        )
        _check(
            types[0] == "response.content_part.added",
            f"{kind} must start with content_part.added: {types}",
        )
        _check(
            types[-1] == "response.content_part.done",
            f"{kind} must end with content_part.done: {types}",
        )
        _check(types[-2] == done, f"{kind} needs {done} before content_part.done: {types}")
        annotation = "response.output_text.annotation.added"
        middle = [t for t in types[1:-2] if t != annotation]
        _check(
            len(middle) >= 1 and all(t == delta for t in middle),
            f"{kind} needs one or more {delta}: {types}",
        )
        text = "".join(e["delta"] for e in inner[1:-2] if e["type"] == delta)
        added = [e for e in inner if e["type"] == annotation]
        _check(
            [e["annotation_index"] for e in added] == list(range(len(added))),
            f"{kind}: annotation indexes are not 0, 1, 2, ...",
        )
        if kind == "message":
            annotations = inner[-1]["part"]["annotations"]
            _check(
                [e["annotation"] for e in added] == annotations,
                f"{kind}: annotation.added events differ from the part's annotations",
            )
            _check(
                item["content"][0]["annotations"] == annotations,
                f"{kind}: item annotations differ from the content part's",
            )
        _check(
            inner[-2]["text"] == text, f"{kind}: deltas {text!r} != done text {inner[-2]['text']!r}"
        )
        _check(inner[-1]["part"]["text"] == text, f"{kind}: content_part.done text differs")
        _check(item["content"][0]["text"] == text, f"{kind}: item text differs from deltas")
    elif kind in ("function_call", "mcp_call"):
        delta, done = f"response.{kind}_arguments.delta", f"response.{kind}_arguments.done"
        _check(done in types, f"{kind} lacks {done}: {types}")
        done_at = types.index(done)
        _check(
            all(t == delta for t in types[:done_at] if not t.startswith("response.mcp_call.")),
            f"{kind}: unexpected events before {done}: {types}",
        )
        args = _deltas(inner[:done_at], "_arguments.delta")
        _check(inner[done_at]["arguments"] == args, f"{kind}: argument deltas != done arguments")
        _check(item["arguments"] == args, f"{kind}: item arguments differ from deltas")
        if kind == "mcp_call":
            _check(
                types[0] == "response.mcp_call.in_progress",
                f"mcp_call must start in_progress: {types}",
            )
            _check(
                types[-1] in ("response.mcp_call.completed", "response.mcp_call.failed"),
                f"mcp_call must end completed or failed: {types}",
            )
    elif kind == "file_search_call":
        states = ["response.file_search_call.in_progress", "response.file_search_call.searching"]
        ending = [] if item["status"] == "failed" else ["response.file_search_call.completed"]
        _check(types == states + ending, f"file_search_call events: {types}")
        _check(item["status"] in ("completed", "failed"), f"file_search_call ends {item['status']}")
    elif kind == "mcp_list_tools":
        _check(
            types[:1] == ["response.mcp_list_tools.in_progress"], f"mcp_list_tools events: {types}"
        )
        _check(
            types[-1:]
            in (["response.mcp_list_tools.completed"], ["response.mcp_list_tools.failed"]),
            f"mcp_list_tools events: {types}",
        )
