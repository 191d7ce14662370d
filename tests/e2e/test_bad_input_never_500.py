"""Client input never produces a 500: every field of every create route, given wrong types."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_create_params import RESPONSES_SDK_FIELDS
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
    # Every field the SDK defines for the create routes (see test_create_params).
    "/v1/responses": (
        {"model": "openai/gpt-4o", "input": "hi"},
        sorted(RESPONSES_SDK_FIELDS),
    ),
    # The other chat fields go to the backend as they are; it validates them.
    "/v1/chat/completions": (
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        ["model", "messages", "stream", "store", "metadata"],
    ),
    "/v1/prompts": ({"prompt": "Hi {{name}}"}, ["prompt", "variables"]),
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


def test_prompt_routes_with_wrong_values(loom_server):
    with httpx.Client(base_url=loom_server.url, timeout=30) as http:
        made = http.post("/v1/prompts", json={"prompt": "Hi {{name}}"}).json()
        pid = made["prompt_id"]
        for value in WRONG_VALUES:
            for path, body in (
                (f"/v1/prompts/{pid}", {"prompt": "x", "version": 1, "variables": value}),
                (f"/v1/prompts/{pid}", {"prompt": value, "version": 1}),
                (f"/v1/prompts/{pid}", {"prompt": "x", "version": value}),
                (f"/v1/prompts/{pid}/set-default-version", {"version": value}),
            ):
                response = http.post(path, json=body)
                assert response.status_code < 500, (path, body, response.text)
            response = http.get(f"/v1/prompts/{pid}", params={"version": value})
            assert response.status_code < 500, (value, response.text)
