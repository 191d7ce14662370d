"""What is observed of a whole turn and of each model call, once each, never per chunk."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from loom.observability.metrics import (
    RESPONSES,
    TIME_TO_FIRST_TOKEN,
    TURNS_IN_FLIGHT,
    UPSTREAM_LATENCY,
    bounded,
    observe_usage,
)
from loom.observability.tracing import start_turn

Persist = Callable[[dict[str, Any]], Awaitable[None]]


class TurnObservation:
    """A Responses turn from its start to its stored end: the in-flight gauge, the final
    status, the tokens and the turn's trace span."""

    __slots__ = ("_open", "model", "trace")

    def __init__(self, response_id: str, model: str):
        self.model = model
        self.trace = start_turn(response_id, model)
        self._open = True
        TURNS_IN_FLIGHT.inc()

    def saving(self, persist: Persist) -> Persist:
        """`persist` (the turn's store write) as a child span, then the turn's end."""

        async def persist_and_observe(response: dict[str, Any]) -> None:
            try:
                with self.trace.child("loom.store.save_turn", {}):
                    await persist(response)
            except BaseException:
                self.finished({**response, "status": "failed"})
                raise
            self.finished(response)

        return persist_and_observe

    def finished(self, response: dict[str, Any]) -> None:
        """The final Response, once stored."""
        if not self._open:
            return
        self._open = False
        TURNS_IN_FLIGHT.dec()
        status = response.get("status") or "failed"
        RESPONSES.labels(status).inc()
        observe_usage(self.model, response.get("usage"))
        error = response.get("error")
        self.trace.end(status, error.get("message") if isinstance(error, dict) else None)

    def refused(self, exc: BaseException) -> None:
        """The turn ended before its first event (an HTTP error), or never finished."""
        if not self._open:
            return
        self._open = False
        TURNS_IN_FLIGHT.dec()
        RESPONSES.labels("error").inc()
        self.trace.end("error", f"{type(exc).__name__}: {exc}")


class ModelCallTimer:
    """Time to first token and the whole call's latency, per provider and model."""

    __slots__ = ("_labels", "_started")

    def __init__(self, provider: str, model: str):
        self._labels = (provider, bounded("model", model))
        self._started = time.perf_counter()

    def first_token(self) -> None:
        TIME_TO_FIRST_TOKEN.labels(*self._labels).observe(time.perf_counter() - self._started)

    def done(self, ok: bool) -> None:
        elapsed = time.perf_counter() - self._started
        UPSTREAM_LATENCY.labels(*self._labels, "ok" if ok else "error").observe(elapsed)
