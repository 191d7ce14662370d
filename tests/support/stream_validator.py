"""Check a Responses SSE stream against the event grammar, the SDK types and the spec.

Used by every streaming test. It checks:
- framing: `event: <type>` matches the data's `type`; `sequence_number` is 0, 1, 2, ...;
- `response.created`, then `response.in_progress`, then items, then exactly one terminal
  event (`response.completed`, `response.incomplete` or `response.failed`) at the end;
- each item: `output_item.added` → its inner events → `output_item.done`, never
  interleaved, output indexes in order; message and reasoning content-part events around
  their deltas (reasoning: summary parts too); function / MCP argument deltas before
  their `done`; custom tool input deltas before `custom_tool_call_input.done`; a file
  search's `in_progress` → `searching` → `completed` (no `completed` when it failed);
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
    if data[1]["type"] == "response.queued":  # a background response: created, queued, ...
        _check(data[0]["response"]["status"] == "queued", "a queued stream starts queued")
        _check(data[1]["response"]["status"] == "queued", "response.queued must be queued")
        data = [data[0], *data[2:]]
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


def validate_cut_stream(events: list[dict[str, Any]], ended: str) -> list[dict[str, Any]]:
    """Validate a background stream that was cut short, possibly inside an item: cancelled
    (`ended="cancelled"`: its last event is `response.incomplete` carrying the response
    with status `cancelled`, the SDK having no stream event for a cancel) or ended `failed`
    after its process died (`ended="failed"`: its last event is `response.failed`).
    Sequence numbers run 0, 1, 2, ... and every event parses as its SDK type."""
    _check(len(events) >= 2, f"stream too short: {[e['type'] for e in events]}")
    for n, event in enumerate(events):
        _check(event.get("sequence_number") == n, f"event {n} has {event.get('sequence_number')}")
        validate_event(event)
    _check(events[0]["type"] == "response.created", "first event must be response.created")
    _check(events[1]["type"] == "response.queued", "second event must be response.queued")
    terminal = [e["type"] for e in events if e["type"] in TERMINAL]
    end = {"failed": "response.failed", "cancelled": "response.incomplete"}[ended]
    _check(terminal == [end], f"terminal events {terminal}")
    _check(events[-1]["type"] == end, f"must end with {end}")
    _check(events[-1]["response"]["status"] == ended, f"{ended} status")
    validate_response(events[-1]["response"])
    added = [e["item"]["id"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["item"]["id"] for e in events if e["type"] == "response.output_item.done"]
    _check(done == added[: len(done)] and len(added) - len(done) <= 1, "items out of order")
    return events


def _deltas(inner: list[dict[str, Any]], suffix: str) -> str:
    return "".join(e["delta"] for e in inner if e["type"].endswith(suffix))


def _check_inner(item: dict[str, Any], types: list[str], inner: list[dict[str, Any]]) -> None:
    kind = item["type"]
    if kind == "message":
        annotation = "response.output_text.annotation.added"
        added = [e for e in inner if e["type"] == annotation]
        plain = [e for e in inner if e["type"] != annotation]
        _check_part(item, [e["type"] for e in plain], plain, "output_text")
        _check(item["content"][0]["text"] == plain[-2]["text"], "message: item text differs")
        _check(
            [e["annotation_index"] for e in added] == list(range(len(added))),
            "message: annotation indexes are not 0, 1, 2, ...",
        )
        annotations = plain[-1]["part"]["annotations"]
        _check(
            [e["annotation"] for e in added] == annotations,
            "message: annotation.added events differ from the part's annotations",
        )
        _check(
            item["content"][0]["annotations"] == annotations,
            "message: item annotations differ from the content part's",
        )
    elif kind == "reasoning":
        _check_reasoning(item, types, inner)
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
    elif kind == "custom_tool_call":
        delta = "response.custom_tool_call_input.delta"
        done = "response.custom_tool_call_input.done"
        _check(types[-1:] == [done], f"custom_tool_call must end with {done}: {types}")
        _check(all(t == delta for t in types[:-1]), f"custom_tool_call events: {types}")
        text = _deltas(inner[:-1], "_input.delta")
        _check(inner[-1]["input"] == text, "custom_tool_call: input deltas != done input")
        _check(item["input"] == text, "custom_tool_call: item input differs from deltas")
    elif kind == "mcp_list_tools":
        _check(
            types[:1] == ["response.mcp_list_tools.in_progress"], f"mcp_list_tools events: {types}"
        )
        _check(
            types[-1:]
            in (["response.mcp_list_tools.completed"], ["response.mcp_list_tools.failed"]),
            f"mcp_list_tools events: {types}",
        )


_PART_EVENTS = {
    # part kind → (opening event, delta event, done event, closing event)
    "output_text": (
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
    ),
    "reasoning_text": (
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
    ),
    "summary_text": (
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ),
}


def _check_part(item: dict[str, Any], types: list[str], inner: list[dict[str, Any]], kind: str):
    """One part: opened, one or more deltas, its done text, closed; the texts agree."""
    added, delta, done, closed = _PART_EVENTS[kind]
    name = f"{item['type']} {kind}"
    _check(len(types) >= 4 and types[0] == added, f"{name} must start with {added}: {types}")
    _check(types[-1] == closed, f"{name} must end with {closed}: {types}")
    _check(types[-2] == done, f"{name} needs {done} before {closed}: {types}")
    _check(all(t == delta for t in types[1:-2]), f"{name} needs one or more {delta}: {types}")
    text = "".join(e["delta"] for e in inner[1:-2])
    _check(inner[-2]["text"] == text, f"{name}: deltas {text!r} != done text {inner[-2]['text']!r}")
    _check(inner[-1]["part"]["text"] == text, f"{name}: part done text differs")
    return text


def _check_reasoning(item: dict[str, Any], types: list[str], inner: list[dict[str, Any]]) -> None:
    """A reasoning item: summary parts and at most one reasoning-text part, each whole."""
    texts, summaries, i = [], [], 0
    while i < len(types):
        kind = "summary_text" if types[i] == "response.reasoning_summary_part.added" else None
        kind = kind or ("reasoning_text" if types[i] == "response.content_part.added" else None)
        _check(kind is not None, f"reasoning: unexpected {types[i]}: {types}")
        end = types.index(_PART_EVENTS[kind][3], i) + 1
        text = _check_part(item, types[i:end], inner[i:end], kind)
        if kind == "summary_text":
            _check(
                all(e["summary_index"] == len(summaries) for e in inner[i:end]),
                f"reasoning: summary_index out of order: {types}",
            )
            summaries.append(text)
        else:
            texts.append(text)
        i = end
    _check(len(texts) <= 1, f"reasoning: more than one reasoning_text part: {types}")
    content = [{"type": "reasoning_text", "text": t} for t in texts]
    _check((item.get("content") or []) == content, "reasoning: item content differs from deltas")
    _check(
        [s["text"] for s in item.get("summary") or []] == summaries,
        "reasoning: item summary differs from the summary deltas",
    )
