"""The file_search phase of a turn: the model's searches, as `file_search_call` items.

Each search the model asked for becomes one item: `output_item.added` (in_progress) →
`response.file_search_call.in_progress` → `.searching` → `.completed` (or the item ends
`failed`) → `output_item.done`. The searches of one model call run at once and their items
are emitted in order. The item kept in the output (and stored) holds the results; the
events show them only when the request included `file_search_call.results`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from loom.engine.events import Event, EventSequencer
from loom.engine.ids import new_id
from loom.engine.model_call import SearchDraft
from loom.errors import LoomError
from loom.tools.file_search import (
    FileSearchConfig,
    Searcher,
    query_of,
    result_entries,
    without_results,
)
from loom.tools.toolset import ToolSet

log = logging.getLogger("loom.engine")

Item = dict[str, Any]


@dataclass(frozen=True)
class SearchContext:
    """What the searches of a turn need: who asks, and the retrieval service."""

    owner: str
    searcher: Searcher
    include_results: bool = False
    # What a call with a blank or missing query searches for: the user's latest words (a
    # small model may send `{"query": " "}`; the search still serves the question).
    fallback_query: str | None = None


class SearchSteps:
    def __init__(
        self,
        seq: EventSequencer,
        output: list[Item],
        toolset: ToolSet,
        context: SearchContext | None,
    ):
        self._seq = seq
        self._output = output
        self._toolset = toolset
        self._context = context

    async def _search(self, config: FileSearchConfig, query: str | None) -> list[Item] | str:
        """The results, or the reason the search failed (it is logged)."""
        if query is None:
            return "the call gave no 'query' string"
        if self._context is None:
            return "file search is not available on this server"
        try:
            hits = await self._context.searcher.search(
                self._context.owner,
                list(config.vector_store_ids),
                query,
                max_num_results=config.max_num_results,
                filters=config.filters,
                score_threshold=config.score_threshold,
            )
        except LoomError as exc:  # e.g. a vector store deleted since the request began
            return exc.message
        except Exception:  # the item still ends, and the model is told the search failed
            log.exception("file search in %s failed", list(config.vector_store_ids))
            return "the search failed"
        return result_entries(hits)

    def _shown(self, item: Item) -> Item:
        if self._context is not None and self._context.include_results:
            return dict(item)
        return without_results(item)

    async def run(self, drafts: list[SearchDraft]) -> AsyncIterator[Event]:
        config = self._toolset.file_search
        if not drafts or config is None:
            return
        fallback = self._context.fallback_query if self._context else None
        queries = [query_of(d.arguments) or fallback for d in drafts]
        tasks = [asyncio.ensure_future(self._search(config, q)) for q in queries]
        try:
            for query, task in zip(queries, tasks, strict=True):
                item: Item = {
                    "id": new_id("fs"),
                    "type": "file_search_call",
                    "queries": [query] if query else [],
                    "status": "in_progress",
                    "results": None,
                }
                index = len(self._output)
                self._output.append(item)
                yield self._seq.item_added(index, dict(item))
                for state in ("in_progress", "searching"):
                    yield self._seq.emit(
                        f"response.file_search_call.{state}", item_id=item["id"], output_index=index
                    )
                outcome = await task
                if isinstance(outcome, str):
                    item["status"] = "failed"
                    log.info("file search %s failed: %s", item["id"], outcome)
                else:
                    item["status"] = "completed"
                    item["results"] = outcome
                    for result in outcome:
                        self._toolset.citable_files[result["file_id"]] = result["filename"]
                    yield self._seq.emit(
                        "response.file_search_call.completed",
                        item_id=item["id"],
                        output_index=index,
                    )
                yield self._seq.item_done(index, self._shown(item))
        finally:
            for task in tasks:
                task.cancel()
