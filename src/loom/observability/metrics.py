"""Prometheus metrics, served at `GET /metrics` by `prometheus_client`.

The metrics live in one registry of this module (the prometheus_client idiom), so any
layer can observe without being handed an object. Label values that clients choose
(model ids, MCP server labels) are capped: past `_MAX_LABEL_VALUES` distinct values a new
one is recorded as `other`, so a client cannot grow the registry without bound.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

HTTP_REQUESTS = Counter(
    "loom_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "loom_http_request_duration_seconds",
    "Time from request to the end of the response body (a whole stream for SSE).",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RESPONSES = Counter(
    "loom_responses",
    "Responses by final status: completed, incomplete, failed, or error (refused with an "
    "HTTP error before its stream started).",
    ["status"],
    registry=REGISTRY,
)
TURNS_IN_FLIGHT = Gauge("loom_turns_in_flight", "Responses turns running now.", registry=REGISTRY)
TIME_TO_FIRST_TOKEN = Histogram(
    "loom_time_to_first_token_seconds",
    "From sending a streamed model call to its first chunk.",
    ["provider", "model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "loom_upstream_request_duration_seconds",
    "A whole model call, from sending it to its last chunk (or its answer).",
    ["provider", "model", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOKENS = Counter(
    "loom_tokens",
    "Tokens the models read (in) and wrote (out), as their usage reports.",
    ["model", "direction"],
    registry=REGISTRY,
)
MCP_CALLS = Counter(
    "loom_mcp_calls",
    "MCP tool calls, by server label and outcome (ok or error).",
    ["server_label", "outcome"],
    registry=REGISTRY,
)
MCP_LATENCY = Histogram(
    "loom_mcp_call_duration_seconds",
    "MCP tool call latency, by server label.",
    ["server_label"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DB_LATENCY = Histogram(
    "loom_db_operation_duration_seconds",
    "Database operations (a read connection or a write transaction), by kind.",
    ["operation"],
    buckets=_DB_BUCKETS,
    registry=REGISTRY,
)

_MAX_LABEL_VALUES = 200
_seen: dict[str, set[str]] = {}


def bounded(kind: str, value: str) -> str:
    """`value` as a label, or `other` once `kind` has many distinct values already."""
    seen = _seen.setdefault(kind, set())
    if value in seen:
        return value
    if len(seen) >= _MAX_LABEL_VALUES:
        return "other"
    seen.add(value)
    return value


def observe_usage(model: str, usage: dict | None) -> None:
    """Count a model's tokens from a Responses or Chat Completions `usage` object."""
    if not usage:
        return
    tokens_in = usage.get("input_tokens", usage.get("prompt_tokens")) or 0
    tokens_out = usage.get("output_tokens", usage.get("completion_tokens")) or 0
    label = bounded("model", model)
    if tokens_in:
        TOKENS.labels(label, "in").inc(tokens_in)
    if tokens_out:
        TOKENS.labels(label, "out").inc(tokens_out)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format of every metric, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
