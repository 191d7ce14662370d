"""Turn one streamed model call into Responses output items and their events.

`ModelCallStream.feed(chunk)` takes each upstream chat chunk and returns the events it
causes; `finish()` closes whatever is still open. It keeps the grammar: every item gets
`output_item.added` … `output_item.done`, a message gets its content-part events around
its text deltas, and items never interleave.

When the turn has a file_search tool, a message's text passes through a `CitationStream`
that turns `<|file-id|>` markers into `file_citation` annotations (engine/citations.py).

Calls to MCP tools and searches are not streamed here: an `mcp_call` item stays open while
its call runs, which would interleave with whatever the model streams next. They are
collected as `McpCallDraft`s and `SearchDraft`s, and the loop emits their items after the
model call, when it runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom.engine.citations import CitationStream
from loom.engine.custom_calls import custom_input, unknown_tool_error
from loom.engine.events import Event, EventSequencer
from loom.engine.ids import new_id
from loom.engine.reasoning_parts import ReasoningParts
from loom.tools.mcp_tools import McpServer
from loom.tools.toolset import ToolSet

Item = dict[str, Any]


@dataclass
class _OpenItem:
    kind: str  # "reasoning" | "message" | "call" | "custom" | "custom_raw" (native custom)
    item: Item
    output_index: int
    parts: list[str] = field(default_factory=list)
    citations: CitationStream | None = None
    reasoning: ReasoningParts | None = None
    logprobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ToolCall:
    """A call the model made, as the output item that records it."""

    item: Item
    output_index: int


@dataclass
class McpCallDraft:
    """A call the model made to an MCP tool; its item is emitted when the loop runs it."""

    server: McpServer
    tool: dict[str, Any]  # the listing entry
    parts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.tool["name"]

    @property
    def arguments(self) -> str:
        return "".join(self.parts)


@dataclass
class SearchDraft:
    """A search the model asked for; its `file_search_call` item is emitted when it runs."""

    parts: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        return "".join(self.parts)


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions token logprob in the Responses shape (the same fields)."""
    return {
        "token": entry.get("token", ""),
        "bytes": entry.get("bytes") or [],
        "logprob": entry.get("logprob", 0.0),
        "top_logprobs": [
            {"token": t.get("token", ""), "bytes": t.get("bytes") or [], "logprob": t["logprob"]}
            for t in entry.get("top_logprobs") or ()
        ],
    }


class ModelCallStream:
    def __init__(
        self,
        seq: EventSequencer,
        output: list[Item],
        toolset: ToolSet,
        call_budget: int | None,
        parallel_tool_calls: bool,
        logprobs: bool = False,
    ):
        self._logprobs = logprobs  # keep the backend's logprobs on output text
        self._seq = seq
        self._output = output
        self._toolset = toolset
        self._budget = call_budget
        self._parallel = parallel_tool_calls
        self._open: _OpenItem | None = None
        self._calls_by_index: dict[int, _OpenItem | McpCallDraft | SearchDraft | None] = {}
        self._started = 0  # calls the model started that were kept
        self.calls: list[ToolCall] = []
        self.mcp_calls: list[McpCallDraft] = []
        self.search_calls: list[SearchDraft] = []
        self.finish_reason: str | None = None
        self.text = ""

    # -- opening and closing items ------------------------------------------------------

    def _open_item(self, kind: str, item: Item, events: list[Event]) -> _OpenItem:
        self._close(events)
        opened = _OpenItem(kind, item, len(self._output))
        self._output.append(item)
        events.append(self._seq.item_added(opened.output_index, dict(item)))
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._seq.part_added(item["id"], opened.output_index, 0, part))
        elif kind == "reasoning":
            opened.reasoning = ReasoningParts(self._seq, item, opened.output_index)
        self._open = opened
        return opened

    def _close(self, events: list[Event], status: str = "completed") -> None:
        opened = self._open
        if opened is None:
            return
        self._open = None
        item, index = opened.item, opened.output_index
        text = "".join(opened.parts)
        if opened.kind == "message":
            annotations: list[dict[str, Any]] = []
            if opened.citations is not None:
                rest, added = opened.citations.finish(text)
                if rest:
                    opened.parts.append(rest)
                    text += rest
                    events.append(self._seq.text_delta(item["id"], index, rest))
                self._annotation_events(opened, added, events)
                annotations = opened.citations.annotations
            logprobs = opened.logprobs
            part = {
                "type": "output_text",
                "text": text,
                "annotations": annotations,
                "logprobs": logprobs,
            }
            events.append(self._seq.text_done(item["id"], index, text, logprobs))
            events.append(self._seq.part_done(item["id"], index, 0, part))
            item["content"] = [part]
            self.text += text
        elif opened.reasoning is not None:
            opened.reasoning.close(events)
        elif opened.kind == "custom_raw":
            item["input"] = text
            events.append(self._seq.custom_input_done(item["id"], index, text))
            self.calls.append(ToolCall(item, index))
        elif opened.kind == "custom":
            # The upstream streams `{"input": ...}` JSON; the item carries the string itself.
            value = custom_input(text)
            item["input"] = value
            if value:
                events.append(self._seq.custom_input_delta(item["id"], index, value))
            events.append(self._seq.custom_input_done(item["id"], index, value))
            self.calls.append(ToolCall(item, index))
        else:
            item["arguments"] = text
            events.append(self._seq.arguments_done(item["type"], item["id"], index, text))
            self.calls.append(ToolCall(item, index))
        item["status"] = status
        events.append(self._seq.item_done(index, item))

    # -- chunks ---------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self._reasoning_parts(events, for_text=True).text(reasoning, events)
            for detail in delta.get("reasoning_details") or ():
                self._reasoning_detail(detail, events)
            content = delta.get("content")
            if content:
                logprobs = self._logprobs and (choice.get("logprobs") or {}).get("content")
                self._content(content, events, logprobs or None)
            for call in delta.get("tool_calls") or ():
                self._tool_call(call, events)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _reasoning_parts(self, events: list[Event], for_text: bool = False) -> ReasoningParts:
        """The open reasoning item's parts; a new item if none is open, or if text comes
        after the open item's text part was closed by a summary."""
        opened = self._open
        parts = opened.reasoning if opened is not None else None
        if parts is None or (for_text and parts.text_closed):
            item = {
                "type": "reasoning",
                "id": new_id("rs"),
                "summary": [],
                "content": [],
                "status": "in_progress",
            }
            parts = self._open_item("reasoning", item, events).reasoning
        return parts

    def _reasoning_detail(self, detail: Any, events: list[Event]) -> None:
        """One `reasoning_details` entry (OpenRouter's format)."""
        if not isinstance(detail, dict):
            return
        kind = detail.get("type")
        if kind == "reasoning.text" and detail.get("text"):
            self._reasoning_parts(events, for_text=True).text(detail["text"], events)
        elif kind == "reasoning.summary" and detail.get("summary"):
            self._reasoning_parts(events).summary(detail["summary"], events)
        elif kind == "reasoning.encrypted" and isinstance(detail.get("data"), str):
            self._reasoning_parts(events).encrypted.append(detail["data"])

    def _content(
        self, text: str, events: list[Event], logprobs: list[dict[str, Any]] | None = None
    ) -> None:
        opened = self._open
        if opened is None or opened.kind != "message":
            item = {
                "type": "message",
                "id": new_id("msg"),
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            opened = self._open_item("message", item, events)
            if self._toolset.file_search is not None:
                opened.citations = CitationStream(self._toolset.citable_files)
        added: list[dict[str, Any]] = []
        if opened.citations is not None:
            text, added = opened.citations.feed(text)
        if logprobs:
            logprobs = [_logprob(entry) for entry in logprobs]
            opened.logprobs.extend(logprobs)
        if text:
            opened.parts.append(text)
            events.append(
                self._seq.text_delta(opened.item["id"], opened.output_index, text, logprobs)
            )
        if added:
            self._annotation_events(opened, added, events)

    def _annotation_events(
        self, opened: _OpenItem, added: list[dict[str, Any]], events: list[Event]
    ) -> None:
        assert opened.citations is not None
        first = len(opened.citations.annotations) - len(added)
        for n, annotation in enumerate(added, first):
            events.append(
                self._seq.emit(
                    "response.output_text.annotation.added",
                    item_id=opened.item["id"],
                    output_index=opened.output_index,
                    content_index=0,
                    annotation_index=n,
                    annotation=annotation,
                )
            )

    def _tool_call(self, call: dict[str, Any], events: list[Event]) -> None:
        index = call.get("index", 0)
        # A native custom call (`custom_tools: native`) streams `custom.input`, raw text.
        function = call.get("function") or call.get("custom") or {}
        if index not in self._calls_by_index:
            self._calls_by_index[index] = self._start_call(call, function, events)
        opened = self._calls_by_index[index]
        if opened is None:  # over the call budget: dropped
            return
        arguments = function.get("arguments") or function.get("input")
        if arguments and isinstance(opened, McpCallDraft | SearchDraft):
            opened.parts.append(arguments)
        elif arguments:
            if opened is not self._open:
                # A late delta for a call already closed cannot be streamed any more.
                if opened.kind == "custom":
                    opened.item["input"] = custom_input(
                        "".join(opened.parts) + arguments, opened.item["input"]
                    )
                elif opened.kind == "custom_raw":
                    opened.item["input"] += arguments
                else:
                    opened.item["arguments"] += arguments
                return
            opened.parts.append(arguments)
            if opened.kind == "custom":
                return  # its input is sent whole when the call closes
            if opened.kind == "custom_raw":
                item_id, output_index = opened.item["id"], opened.output_index
                events.append(self._seq.custom_input_delta(item_id, output_index, arguments))
                return
            events.append(
                self._seq.arguments_delta(
                    opened.item["type"], opened.item["id"], opened.output_index, arguments
                )
            )

    def _start_call(
        self, call: dict[str, Any], function: dict[str, Any], events: list[Event]
    ) -> _OpenItem | McpCallDraft | SearchDraft | None:
        if self._budget is not None and self._started >= self._budget:
            return None
        if not self._parallel and self._started >= 1:
            return None
        self._started += 1
        name = function.get("name") or ""
        if self._toolset.is_file_search(name):
            search = SearchDraft()
            self.search_calls.append(search)
            return search
        mcp = self._toolset.mcp_tool(name)
        if mcp is not None:
            draft = McpCallDraft(*mcp)
            self.mcp_calls.append(draft)
            return draft
        call_id = call.get("id") or new_id("call")
        route = self._toolset.route(name)
        if route is not None and route.kind == "unknown":
            raise unknown_tool_error(route)
        if route is not None and route.kind == "custom":
            item = {"type": "custom_tool_call", "id": new_id("ctc"), "call_id": call_id}
            if route.namespace:
                item["namespace"] = route.namespace
            item.update(name=route.name, input="", status="in_progress")
            return self._open_item("custom_raw" if route.native else "custom", item, events)
        item = {
            "type": "function_call",
            "id": new_id("fc"),
            "call_id": call_id,
            "name": route.name if route else name,
            "arguments": "",
            "status": "in_progress",
        }
        if route is not None and route.namespace:
            item["namespace"] = route.namespace
        return self._open_item("call", item, events)

    def finish(self) -> list[Event]:
        """Close the open item; a stop on length or a content filter leaves it `incomplete`."""
        events: list[Event] = []
        cut = self.finish_reason in ("length", "content_filter")
        self._close(events, "incomplete" if cut else "completed")
        return events

    def abort(self) -> list[Event]:
        """Close the open item after a failure, so every `added` still has its `done`."""
        events: list[Event] = []
        self._close(events, "incomplete")
        return events
