"""The file_search tool's request parsing, what the model reads, and what clients see."""

from __future__ import annotations

import pytest

from loom.errors import InvalidRequestError
from loom.tools.file_search import (
    SEARCH_FUNCTION,
    parse_file_search_tool,
    present_items,
    query_of,
    render_for_model,
    result_entries,
)
from loom.tools.toolset import build_toolset


def _param(raw: dict, where: str = "tools[0]") -> str | None:
    with pytest.raises(InvalidRequestError) as info:
        parse_file_search_tool(raw, where)
    return info.value.param


def test_parse_echoes_openai_defaults():
    config, echo = parse_file_search_tool(
        {"type": "file_search", "vector_store_ids": ["vs_1"]}, "tools[2]"
    )
    assert config.vector_store_ids == ("vs_1",) and config.max_num_results == 10
    assert config.where == "tools[2]"
    assert echo == {
        "type": "file_search",
        "vector_store_ids": ["vs_1"],
        "filters": None,
        "max_num_results": 10,
        "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
    }


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({}, "tools[1].vector_store_ids"),
        ({"vector_store_ids": []}, "tools[1].vector_store_ids"),
        ({"vector_store_ids": "vs_1"}, "tools[1].vector_store_ids"),
        (
            {"vector_store_ids": ["vs"], "filters": {"type": "regex", "key": "a", "value": 1}},
            "tools[1].filters.type",
        ),
        (
            {
                "vector_store_ids": ["vs"],
                "filters": {
                    "type": "and",
                    "filters": [{"type": "eq", "key": "a", "value": 1}, {"type": "like"}],
                },
            },
            "tools[1].filters.filters[1].type",
        ),
        (
            {"vector_store_ids": ["vs"], "filters": {"type": "or", "filters": []}},
            "tools[1].filters.filters",
        ),
        (
            {"vector_store_ids": ["vs"], "filters": {"type": "in", "key": "a", "value": 3}},
            "tools[1].filters.value",
        ),
        (
            {"vector_store_ids": ["vs"], "filters": {"type": "eq", "value": 3}},
            "tools[1].filters.key",
        ),
        ({"vector_store_ids": ["vs"], "max_num_results": 51}, "tools[1].max_num_results"),
        (
            {"vector_store_ids": ["vs"], "ranking_options": {"score_threshold": 2}},
            "tools[1].ranking_options.score_threshold",
        ),
    ],
)
def test_bad_tools_name_the_field(raw, param):
    assert _param({"type": "file_search", **raw}, "tools[1]") == param


def test_toolset_offers_the_search_function_and_forces_it_on_request():
    tools = [{"type": "file_search", "vector_store_ids": ["vs_1"]}]
    toolset = build_toolset(tools, {"type": "file_search"})
    assert [t["function"]["name"] for t in toolset.chat_tools] == [SEARCH_FUNCTION]
    assert toolset.chat_tool_choice == {"type": "function", "function": {"name": SEARCH_FUNCTION}}
    assert toolset.is_file_search(SEARCH_FUNCTION) and not toolset.is_file_search("other")
    with pytest.raises(InvalidRequestError) as info:
        build_toolset(tools * 2, None)
    assert info.value.param == "tools[1].type"
    with pytest.raises(InvalidRequestError) as info:
        build_toolset([], {"type": "file_search"})
    assert info.value.param == "tool_choice.type"


def test_query_of_reads_the_model_arguments():
    assert query_of('{"query": " marketing reports "}') == "marketing reports"
    assert query_of('{"query": ["a", "b"]}') == "a b"
    assert query_of('{"q": "x"}') is None
    assert query_of("not json") is None
    assert query_of("") is None


HIT = {
    "file_id": "file-1",
    "filename": "us_marketing_q1.txt",
    "score": 0.75,
    "attributes": {"region": "us", "date": 1672531200.0},
    "content": [{"type": "text", "text": "US promotional campaigns."}],
}


def test_render_matches_the_recorded_format():
    item = {
        "type": "file_search_call",
        "queries": ["marketing reports"],
        "status": "completed",
        "results": result_entries([HIT]),
    }
    text = render_for_model(item)
    assert text.startswith(
        "knowledge_search tool found 1 chunks:\nBEGIN of knowledge_search tool results.\n"
        "[1] document_id: file-1, score: 0.75, attributes: {'region': 'us', 'date': 1672531200.0,"
        " 'filename': 'us_marketing_q1.txt', 'document_id': 'file-1'} (cite as <|file-1|>)\n"
        "US promotional campaigns.\nEND of knowledge_search tool results.\n"
        'The above results were retrieved to help answer the user\'s query: "marketing reports".'
    )
    assert "<|file-id|>" in text
    empty = render_for_model({**item, "results": []})
    assert empty.endswith("Use them as supporting information only in answering this query.\n")
    assert "failed" in render_for_model({**item, "status": "failed"})


def test_results_are_shown_only_when_included():
    item = {"type": "file_search_call", "id": "fs_1", "queries": ["q"], "status": "completed"}
    item["results"] = result_entries([HIT])
    other = {"type": "message", "id": "m"}
    assert present_items([item, other], None) == [{**item, "results": None}, other]
    assert present_items([item], ["file_search_call.results"]) == [item]
    assert item["results"]  # the stored item is untouched
