"""What a request's `{"type": "file_search"}` tool says, and how its searches read to a model.

- parsing: `vector_store_ids`, `filters`, `max_num_results`, `ranking_options`, with 400s
  that name the field (`tools[0].filters.filters[1].type`); the echo for the Response;
- the function offered to the model (`knowledge_search(query)`), the one the recordings in
  `shared/recordings/` show gpt-4o calling;
- the tool output the model reads: a numbered list of hits with file id, score, attributes
  and text, and the `<|file-id|>` citation instructions, in the format of those recordings;
- `file_search_call` results in OpenAI's shape, and hiding them unless
  `include=["file_search_call.results"]` asks for them.

Nothing here does I/O; the search itself is `loom.rag.retrieval.Retrieval.search`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from loom.errors import InvalidRequestError

# The name, description and schema of the search function, as the recordings show them
# (plus `minLength`, so a grammar-constrained local model cannot send an empty query).
SEARCH_FUNCTION = "knowledge_search"
INCLUDE_RESULTS = "file_search_call.results"
COMPARISON_TYPES = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"})
COMPOUND_TYPES = frozenset({"and", "or"})
_MAX_FILTER_DEPTH = 16


class Searcher(Protocol):
    """The part of `loom.rag.retrieval.Retrieval` the tool uses."""

    async def require_vector_stores(self, owner: str, ids: list[str]) -> None: ...

    async def search(
        self,
        owner: str,
        vector_store_ids: list[str],
        query: str | list[str],
        *,
        max_num_results: int = 10,
        filters: dict | None = None,
        score_threshold: float | None = None,
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class FileSearchConfig:
    vector_store_ids: tuple[str, ...]
    filters: dict[str, Any] | None = None
    max_num_results: int = 10
    score_threshold: float | None = None
    where: str = "tools[0]"  # where the tool sits in the request, for error params


def _fail(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")


def check_filter(raw: Any, where: str, depth: int = 0) -> None:
    """A comparison `{type, key, value}` or a compound `{type: and|or, filters: [...]}`."""
    if not isinstance(raw, dict):
        raise _fail(where, f"'{where}' must be a filter object.")
    if depth > _MAX_FILTER_DEPTH:
        raise _fail(where, f"'{where}' nests filters too deeply.")
    kind = raw.get("type")
    if kind in COMPOUND_TYPES:
        filters = raw.get("filters")
        if not isinstance(filters, list) or not filters:
            raise _fail(f"{where}.filters", f"'{where}.filters' must be a non-empty list.")
        for i, inner in enumerate(filters):
            check_filter(inner, f"{where}.filters[{i}]", depth + 1)
        return
    if kind not in COMPARISON_TYPES:
        allowed = sorted(COMPARISON_TYPES | COMPOUND_TYPES)
        raise _fail(f"{where}.type", f"'{where}.type' {kind!r} is not one of {allowed}.")
    if not isinstance(raw.get("key"), str) or not raw["key"]:
        raise _fail(f"{where}.key", f"'{where}.key' must be a non-empty string.")
    value = raw.get("value")
    scalar = (str, int, float, bool)
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(isinstance(v, scalar) for v in value):
            raise _fail(f"{where}.value", f"'{where}.value' must be a list for '{kind}'.")
    elif not isinstance(value, scalar):
        raise _fail(f"{where}.value", f"'{where}.value' must be a string, number or boolean.")


def parse_file_search_tool(raw: dict[str, Any], where: str) -> tuple[FileSearchConfig, dict]:
    ids = raw.get("vector_store_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise _fail(
            f"{where}.vector_store_ids",
            f"'{where}.vector_store_ids' must be a non-empty list of vector store ids.",
        )
    filters = raw.get("filters")
    if filters is not None:
        check_filter(filters, f"{where}.filters")
    limit = raw.get("max_num_results")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50
    ):
        raise _fail(
            f"{where}.max_num_results", f"'{where}.max_num_results' must be between 1 and 50."
        )
    ranking = raw.get("ranking_options")
    threshold = None
    if ranking is not None:
        if not isinstance(ranking, dict):
            raise _fail(f"{where}.ranking_options", f"'{where}.ranking_options' must be an object.")
        threshold = ranking.get("score_threshold")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 <= threshold <= 1
        ):
            param = f"{where}.ranking_options.score_threshold"
            raise _fail(param, f"'{param}' must be a number between 0 and 1.")
        ranker = ranking.get("ranker")
        if ranker is not None and ranker not in ("auto", "default-2024-11-15"):
            param = f"{where}.ranking_options.ranker"
            raise _fail(param, f"'{param}' must be 'auto' or 'default-2024-11-15'.")
    config = FileSearchConfig(
        vector_store_ids=tuple(ids),
        filters=filters,
        max_num_results=limit or 10,
        score_threshold=None if threshold is None else float(threshold),
        where=where,
    )
    echo = {
        "type": "file_search",
        "vector_store_ids": list(ids),
        "filters": filters,
        "max_num_results": config.max_num_results,
        "ranking_options": {
            "ranker": (ranking or {}).get("ranker") or "auto",
            "score_threshold": config.score_threshold or 0.0,
        },
    }
    return config, echo


def chat_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": SEARCH_FUNCTION,
            "description": "Search for information in a database.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The query to search for. Can be a natural language"
                        " sentence or keywords.",
                    }
                },
                "required": ["query"],
            },
        },
    }


def query_of(arguments: str) -> str | None:
    """The model's query, or None when its arguments hold no usable one."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else None
    except ValueError:
        return None
    query = parsed.get("query") if isinstance(parsed, dict) else None
    if isinstance(query, list):  # some models send several queries at once
        query = " ".join(q for q in query if isinstance(q, str))
    return (query.strip() or None) if isinstance(query, str) else None


# -- results -----------------------------------------------------------------------------


def result_entries(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Retrieval hits as `file_search_call.results` entries (OpenAI's shape)."""
    out = []
    for hit in hits:
        text = "\n".join(
            part.get("text", "") for part in hit.get("content") or () if isinstance(part, dict)
        )
        out.append(
            {
                "file_id": hit["file_id"],
                "filename": hit.get("filename") or "",
                "score": float(hit.get("score") or 0.0),
                "text": text,
                "attributes": dict(hit.get("attributes") or {}),
            }
        )
    return out


_CITE_INSTRUCTIONS = (
    " Cite sources immediately at the end of sentences before punctuation, using"
    " `<|file-id|>` format (e.g., 'This is a fact <|file-Cn3MSNn72ENTiiq11Qda4A|>.')."
    " Do not add extra punctuation. Use only the file IDs provided (do not invent new ones)."
)


def render_for_model(item: dict[str, Any]) -> str:
    """What the model reads after a search: the hits, numbered, each with its file id, score
    and attributes, then how to cite them. Attributes are shown as a Python dict literal with
    the filename and file id added, as in the recorded exchanges gpt-4o answered."""
    if item.get("status") == "failed":
        if not item.get("queries"):
            return f"{SEARCH_FUNCTION} tool failed: the call gave no 'query' string."
        return f"{SEARCH_FUNCTION} tool failed: the search could not be run."
    results = item.get("results") or []
    query = " ".join(item.get("queries") or [])
    lines = [f"{SEARCH_FUNCTION} tool found {len(results)} chunks:\n"]
    lines.append(f"BEGIN of {SEARCH_FUNCTION} tool results.\n")
    for n, result in enumerate(results, 1):
        file_id = result.get("file_id")
        attributes = {
            **(result.get("attributes") or {}),
            "filename": result.get("filename"),
            "document_id": file_id,
        }
        lines.append(
            f"[{n}] document_id: {file_id}, score: {result.get('score')}, "
            f"attributes: {attributes!r} (cite as <|{file_id}|>)\n{result.get('text', '')}\n"
        )
    lines.append(f"END of {SEARCH_FUNCTION} tool results.\n")
    lines.append(
        f'The above results were retrieved to help answer the user\'s query: "{query}".'
        " Use them as supporting information only in answering this query."
        + (_CITE_INSTRUCTIONS if results else "")
        + "\n"
    )
    return "".join(lines)


def known_files(items: list[dict[str, Any]]) -> dict[str, str]:
    """file id → filename of every result in these `file_search_call` items."""
    files: dict[str, str] = {}
    for item in items:
        if item.get("type") == "file_search_call":
            for result in item.get("results") or ():
                if result.get("file_id"):
                    files[result["file_id"]] = result.get("filename") or ""
    return files


# -- what the client sees ---------------------------------------------------------------------


def without_results(item: dict[str, Any]) -> dict[str, Any]:
    """A `file_search_call` item as shown when the client did not include its results."""
    if item.get("type") != "file_search_call" or item.get("results") is None:
        return item
    return {**item, "results": None}


def present_items(items: list[dict[str, Any]], include: list[str] | None) -> list[dict]:
    """Items as the client sees them: search results only when `include` asks for them."""
    if include and INCLUDE_RESULTS in include:
        return items
    return [without_results(item) for item in items]
