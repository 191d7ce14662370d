"""Client input never produces a 500: every field of every create route, given wrong types."""

from __future__ import annotations

import httpx
import pytest

from tests.support.upstream import Turn

WRONG_VALUES = [
    None,
    0,
    -1,
    1.5,
    "",
    "x",
    True,
    [],
    [1],
    {},
    {"a": 1},
    [{}],
    [{"type": 1}],
    [{"role": "user"}],
    [{"type": "message", "content": 5}],
    "a" * 10_000,
]

ROUTES = {
    "/v1/responses": (
        {"model": "openai/gpt-4o", "input": "hi"},
        [
            "model",
            "input",
            "instructions",
            "previous_response_id",
            "conversation",
            "store",
            "stream",
            "metadata",
            "temperature",
            "top_p",
            "max_output_tokens",
            "max_tool_calls",
            "tool_choice",
            "tools",
            "parallel_tool_calls",
            "text",
            "reasoning",
            "include",
            "truncation",
            "top_logprobs",
        ],
    ),
    "/v1/chat/completions": (
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        ["model", "messages", "stream", "store", "metadata"],
    ),
    "/v1/embeddings": (
        {"model": "openai/text-embedding-3-small", "input": "hi"},
        ["model", "input", "dimensions"],
    ),
    "/v1/conversations": ({"items": []}, ["items", "metadata"]),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_wrong_values_are_4xx(loom_server, upstream, route):
    base, fields = ROUTES[route]
    with httpx.Client(base_url=loom_server.url, timeout=30) as http:
        for field in fields:
            for value in WRONG_VALUES:
                upstream.reset()
                # Whatever reaches the model gets a plain answer back.
                upstream.default = Turn(text="ok")
                response = http.post(route, json={**base, field: value})
                assert response.status_code < 500, (route, field, value, response.text)
                if response.status_code >= 400:
                    error = response.json()["error"]
                    assert error["message"] and error["type"]
        for raw in (b"", b"[]", b"null", b"{", b"\xff\xfe", b'{"model": 1e999}'):
            response = http.post(route, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 400, (route, raw, response.text)


def test_item_routes_with_wrong_values(client, loom_server, upstream):
    conv = client.conversations.create()
    with httpx.Client(base_url=loom_server.url, timeout=30) as http:
        for value in WRONG_VALUES:
            response = http.post(f"/v1/conversations/{conv.id}/items", json={"items": value})
            assert 400 <= response.status_code < 500, (value, response.text)
            response = http.post(f"/v1/conversations/{conv.id}", json={"metadata": value})
            assert response.status_code < 500, (value, response.text)
        for query in (
            {"limit": "x"},
            {"limit": -5},
            {"order": "sideways"},
            {"after": ""},
            {"include": "nope"},
        ):
            response = http.get(f"/v1/conversations/{conv.id}/items", params=query)
            assert response.status_code < 500, (query, response.text)
            response = http.get("/v1/responses", params=query)
            assert response.status_code < 500, (query, response.text)
