"""file_search_call items and cited answers, as the chat messages a model reads."""

from __future__ import annotations

import json

from loom.engine.chat_messages import items_to_messages


def _search(item_id: str, query: str) -> dict:
    result = {
        "file_id": "file-1",
        "filename": "a.txt",
        "score": 0.5,
        "text": "A.",
        "attributes": {},
    }
    return {
        "type": "file_search_call",
        "id": item_id,
        "queries": [query],
        "status": "completed",
        "results": [result],
    }


def test_a_function_call_and_a_search_of_one_model_call_share_the_assistant_message():
    function_call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": "{}",
    }
    output = {"type": "function_call_output", "call_id": "call_1", "output": "42"}
    messages = items_to_messages(
        [function_call, _search("fs_1", "a"), _search("fs_2", "b"), output]
    )
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool", "tool"]
    calls = messages[0]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_1", "fs_1", "fs_2"]
    assert json.loads(calls[2]["function"]["arguments"]) == {"query": "b"}
    assert [m["tool_call_id"] for m in messages[1:]] == ["fs_1", "fs_2", "call_1"]
    assert "document_id: file-1" in messages[1]["content"]


def test_searches_of_separate_model_calls_are_separated_by_the_answer():
    answer = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "content": [
            {
                "type": "output_text",
                "text": "A is true.",
                "annotations": [
                    {"type": "file_citation", "file_id": "file-1", "filename": "a.txt", "index": 9}
                ],
            }
        ],
    }
    messages = items_to_messages([_search("fs_1", "a"), answer, _search("fs_2", "b")])
    assert [m["role"] for m in messages] == ["assistant", "tool", "assistant", "assistant", "tool"]
    assert messages[2]["content"] == "A is true <|file-1|>."
