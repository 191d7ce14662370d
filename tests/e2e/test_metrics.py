"""`GET /metrics`, parsed with prometheus_client's own parser before and after real traffic,
and the request id every response carries."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import Turn

pytest_plugins = ["tests.support.mcp_server"]

MODEL = "openai/gpt-4o"


def scrape(loom_server) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, keyed by name and labels."""
    response = httpx.get(f"{loom_server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def http(loom_server, upstream):
    with httpx.Client(base_url=loom_server.url, timeout=30) as client:
        yield client


def test_counters_move_by_the_traffic(loom_server, http, upstream):
    before = scrape(loom_server)
    upstream.script(
        Turn(text="one", prompt_tokens=11, completion_tokens=7),
        Turn(text="two three", prompt_tokens=5, completion_tokens=3),
        Turn(text="torn here and there", fail_after=3),
        Turn(text="chat", prompt_tokens=2, completion_tokens=1),
    )
    first = http.post("/v1/responses", json={"model": MODEL, "input": "a"}).json()
    streamed = http.post("/v1/responses", json={"model": MODEL, "input": "b", "stream": True})
    assert validate_stream(parse_sse(streamed.content))["status"] == "completed"
    torn = http.post("/v1/responses", json={"model": MODEL, "input": "c", "stream": True})
    assert validate_stream(parse_sse(torn.content))["status"] == "failed"
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "d"}]}
    assert http.post("/v1/chat/completions", json=chat).status_code == 200
    assert http.get(f"/v1/responses/{first['id']}").status_code == 200
    assert http.get("/v1/responses/resp_missing").status_code == 404
    assert http.post("/v1/responses", json={"model": 5, "input": "x"}).status_code == 400
    assert http.get("/no/such/route").status_code == 404
    after = scrape(loom_server)

    def requests(method: str, route: str, status: int) -> float:
        labels = {"method": method, "route": route, "status": str(status)}
        return delta(before, after, "loom_http_requests_total", **labels)

    assert requests("POST", "/v1/responses", 200) == 3
    assert requests("POST", "/v1/responses", 400) == 1
    assert requests("POST", "/v1/chat/completions", 200) == 1
    assert requests("GET", "/v1/responses/{response_id}", 200) == 1
    assert requests("GET", "/v1/responses/{response_id}", 404) == 1
    assert requests("GET", "unmatched", 404) == 1
    latency = "loom_http_request_duration_seconds_count"
    route_labels = {"method": "POST", "route": "/v1/responses", "status": "200"}
    assert delta(before, after, latency, **route_labels) == 3

    assert delta(before, after, "loom_responses_total", status="completed") == 2
    assert delta(before, after, "loom_responses_total", status="failed") == 1
    assert after[("loom_turns_in_flight", frozenset())] == 0

    # Tokens: the two Responses turns (the torn one reports none) and the chat completion.
    assert delta(before, after, "loom_tokens_total", model=MODEL, direction="in") == 11 + 5 + 2
    assert delta(before, after, "loom_tokens_total", model=MODEL, direction="out") == 7 + 3 + 1

    model = {"provider": "openai", "model": "gpt-4o"}
    assert delta(before, after, "loom_time_to_first_token_seconds_count", **model) == 3
    upstream_count = "loom_upstream_request_duration_seconds_count"
    assert delta(before, after, upstream_count, **model, outcome="ok") == 3
    assert delta(before, after, upstream_count, **model, outcome="error") == 1
    db_writes = delta(before, after, "loom_db_operation_duration_seconds_count", operation="write")
    assert db_writes >= 4  # each stored turn and the stored chat completion
    assert delta(before, after, "loom_db_operation_duration_seconds_count", operation="read") >= 2


def test_in_flight_turns_while_a_stream_runs(loom_server, upstream):
    upstream.script(Turn(text="slow words come one by one", delay=0.05))
    body = {"model": MODEL, "input": "x", "stream": True}
    with httpx.stream("POST", f"{loom_server.url}/v1/responses", json=body, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines) == "event: response.created"
        assert scrape(loom_server)[("loom_turns_in_flight", frozenset())] == 1
        rest = list(lines)
    assert any("response.completed" in line for line in rest)
    assert scrape(loom_server)[("loom_turns_in_flight", frozenset())] == 0


def test_mcp_calls_by_server_label(loom_server, http, upstream, mcp_server):
    before = scrape(loom_server)
    upstream.script(
        Turn(tool_calls=[("get_boiling_point", {"liquid_name": "water", "celsius": True})]),
        Turn(tool_calls=[("explode", {"reason": "test"})]),
        Turn(text="done"),
    )
    tool = {
        "type": "mcp",
        "server_label": "metered",
        "server_url": mcp_server.http_url,
        "require_approval": "never",
    }
    response = http.post("/v1/responses", json={"model": MODEL, "input": "q", "tools": [tool]})
    calls = [i for i in response.json()["output"] if i["type"] == "mcp_call"]
    assert [c["error"] is None for c in calls] == [True, False]
    after = scrape(loom_server)
    calls_total = "loom_mcp_calls_total"
    assert delta(before, after, calls_total, server_label="metered", outcome="ok") == 1
    assert delta(before, after, calls_total, server_label="metered", outcome="error") == 1
    count = "loom_mcp_call_duration_seconds_count"
    assert delta(before, after, count, server_label="metered") == 2


# -- request ids ----------------------------------------------------------------------------


def test_request_id_is_echoed_or_made_on_every_response(http, upstream):
    upstream.script(Turn(text="hi"))
    given = http.post(
        "/v1/responses",
        json={"model": MODEL, "input": "x", "stream": True},
        headers={"X-Request-Id": "client-abc-123"},
    )
    assert given.status_code == 200 and given.headers["x-request-id"] == "client-abc-123"
    made = [
        http.get("/v1/health"),
        http.get("/no/such/route"),
        http.post("/v1/responses", json={"model": 5}),
        http.get("/metrics"),
        http.get("/v1/models", headers={"X-Request-Id": "x" * 500}),  # too long: replaced
    ]
    assert [r.status_code for r in made] == [200, 404, 400, 200, 200]
    ids = [r.headers["x-request-id"] for r in made]
    assert all(len(i) == 32 for i in ids) and len(set(ids)) == len(ids)
