"""OpenTelemetry traces: one span per turn, a child span per model call, tool call and
store write. Off by default, and then nearly free: `start_turn` hands back a shared
do-nothing object, and the OpenTelemetry SDK is not even imported.

Spans are parented explicitly (the turn's span travels with the turn) rather than through
the ambient context, because a turn's work spans tasks and async generators, which
context attachment would leak across.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

_tracer: trace.Tracer | None = None  # None: tracing is off
_configured: Any = None  # the SDK TracerProvider `configure` made, flushed at shutdown


def configure(enabled: bool, otlp_endpoint: str, service_name: str) -> None:
    """Export spans over OTLP/HTTP to `otlp_endpoint`, in batches, when enabled."""
    if not enabled:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    global _configured
    _configured = provider
    use_tracer_provider(provider)


def shutdown() -> None:
    """Export the spans still batched, then stop tracing (at the app's shutdown)."""
    global _configured
    if _configured is not None:
        provider, _configured = _configured, None
        use_tracer_provider(None)
        provider.shutdown()


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send Loom's spans to `provider` (None turns tracing off)."""
    global _tracer
    _tracer = provider.get_tracer("loom") if provider is not None else None


class TurnTrace:
    """The span of one turn, and a way to open its children."""

    __slots__ = ("_context", "_tracer", "span")

    def __init__(self, tracer: trace.Tracer, span: trace.Span):
        self._tracer = tracer
        self.span = span
        self._context = trace.set_span_in_context(span)

    @contextmanager
    def child(self, name: str, attributes: dict[str, Any]) -> Iterator[trace.Span]:
        span = self._tracer.start_span(name, context=self._context, attributes=attributes)
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()

    def end(self, status: str, error: str | None = None) -> None:
        self.span.set_attribute("loom.response.status", status)
        if error:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()


class _NoTrace:
    """What a turn carries while tracing is off."""

    __slots__ = ()

    def child(self, name: str, attributes: dict[str, Any]) -> nullcontext:
        return nullcontext()

    def end(self, status: str, error: str | None = None) -> None:
        pass


NO_TRACE = _NoTrace()


def start_turn(response_id: str, model: str) -> TurnTrace | _NoTrace:
    tracer = _tracer
    if tracer is None:
        return NO_TRACE
    span = tracer.start_span(
        "loom.turn", attributes={"loom.response.id": response_id, "loom.model": model}
    )
    return TurnTrace(tracer, span)
