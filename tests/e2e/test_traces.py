"""OpenTelemetry traces: a turn's span and its children, captured with the SDK's in-memory
exporter; and the OTLP/HTTP export that `LOOM_OTLP_ENDPOINT` turns on, received by a real
OTLP endpoint on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loom.observability import tracing
from tests.conftest import run_loom
from tests.support.servers import serve
from tests.support.upstream import Turn

pytest_plugins = ["tests.support.mcp_server"]

MODEL = "openai/gpt-4o"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def test_a_turn_is_one_span_with_model_tool_and_store_children(
    loom_server, upstream, mcp_server, spans
):
    upstream.script(
        Turn(tool_calls=[("get_boiling_point", {"liquid_name": "water", "celsius": True})]),
        Turn(text="It boils at 100 C."),
    )
    tool = {
        "type": "mcp",
        "server_label": "chem",
        "server_url": mcp_server.http_url,
        "require_approval": "never",
    }
    body = {"model": MODEL, "input": "q", "tools": [tool], "stream": True}
    response = httpx.post(f"{loom_server.url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 200 and b"response.completed" in response.content

    finished = spans.get_finished_spans()
    turns = [s for s in finished if s.name == "loom.turn"]
    assert len(turns) == 1
    turn = turns[0]
    assert turn.attributes["loom.model"] == MODEL
    assert turn.attributes["loom.response.status"] == "completed"
    assert turn.attributes["loom.response.id"].startswith("resp_")
    children = [s for s in finished if s.parent and s.parent.span_id == turn.context.span_id]
    assert sorted(s.name for s in children) == [
        "loom.mcp_call",
        "loom.model_call",
        "loom.model_call",
        "loom.store.save_turn",
    ]
    assert all(s.context.trace_id == turn.context.trace_id for s in children)
    model_calls = [s for s in children if s.name == "loom.model_call"]
    assert {s.attributes["loom.provider"] for s in model_calls} == {"openai"}
    mcp_call = next(s for s in children if s.name == "loom.mcp_call")
    assert mcp_call.attributes["loom.mcp.server_label"] == "chem"
    assert mcp_call.attributes["loom.mcp.tool"] == "get_boiling_point"
    # Children start and end inside the turn's span.
    for child in children:
        assert turn.start_time <= child.start_time <= child.end_time <= turn.end_time


def test_a_failed_turn_marks_its_span(loom_server, upstream, spans):
    upstream.script(Turn(text="breaks after a while", fail_after=3))
    body = {"model": MODEL, "input": "q", "stream": True}
    response = httpx.post(f"{loom_server.url}/v1/responses", json=body, timeout=30)
    assert b"response.failed" in response.content
    turn = next(s for s in spans.get_finished_spans() if s.name == "loom.turn")
    assert turn.attributes["loom.response.status"] == "failed"
    assert not turn.status.is_ok and "broke off the stream" in turn.status.description
    model_call = next(s for s in spans.get_finished_spans() if s.name == "loom.model_call")
    assert not model_call.status.is_ok


def test_tracing_off_costs_a_shared_no_op(loom_server, upstream):
    """Off (the default), a turn carries the shared do-nothing trace: no span objects."""
    assert tracing.start_turn("resp_x", MODEL) is tracing.NO_TRACE
    with tracing.NO_TRACE.child("loom.model_call", {}) as span:
        assert span is None
    upstream.script(Turn(text="quiet"))
    body = {"model": MODEL, "input": "q"}
    assert httpx.post(f"{loom_server.url}/v1/responses", json=body, timeout=30).status_code == 200


def test_otlp_export_when_configured(upstream_server, upstream, tmp_path: Path):
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(status_code=200)

    collector = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    _, up = upstream_server
    with serve(collector) as otlp:
        env = {
            "OPENAI_API_KEY": "k",
            "OPENAI_BASE_URL": f"{up.url}/v1",
            "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
            "LOOM_LOCAL_MODELS": "off",
            "LOOM_OTLP_ENDPOINT": f"{otlp.url}/v1/traces",
        }
        with run_loom(env) as loom:
            upstream.script(Turn(text="traced"))
            body = {"model": MODEL, "input": "q"}
            assert httpx.post(f"{loom.url}/v1/responses", json=body, timeout=30).status_code == 200
        # Stopping Loom flushed the batch to the collector.
    names = [
        span.name
        for message in received
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert sorted(names) == ["loom.model_call", "loom.store.save_turn", "loom.turn"]
    service = received[0].resource_spans[0].resource.attributes
    assert any(a.key == "service.name" and a.value.string_value == "loom" for a in service)
    assert tracing.start_turn("resp_x", MODEL) is tracing.NO_TRACE  # off again after shutdown
