"""The circuit breaker's states, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from loom.errors import UpstreamUnavailableError
from loom.inference.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_then_half_opens_for_one_probe():
    clock = Clock()
    breaker = CircuitBreaker("up", threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert breaker.before_call() is False
        breaker.failed()
    breaker.before_call()
    breaker.succeeded()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.failed()
    assert breaker.state == "open"
    with pytest.raises(UpstreamUnavailableError) as info:
        breaker.before_call()
    assert info.value.status_code == 503 and info.value.headers == {"Retry-After": "10"}

    clock.now += 10
    assert breaker.state == "half_open"
    assert breaker.before_call() is True  # the probe
    with pytest.raises(UpstreamUnavailableError):
        breaker.before_call()  # others still fail fast while it is out
    breaker.failed()  # the probe failed: open again for a full cool-down
    assert breaker.state == "open"
    clock.now += 9.5
    with pytest.raises(UpstreamUnavailableError):
        breaker.before_call()
    clock.now += 0.5
    assert breaker.before_call() is True
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.before_call() is False


def test_a_released_probe_lets_the_next_call_probe():
    clock = Clock()
    breaker = CircuitBreaker("up", threshold=1, cooldown=1, clock=clock)
    breaker.before_call()
    breaker.failed()
    clock.now += 1
    assert breaker.before_call() is True
    breaker.released(True)  # e.g. the client's own 400: says nothing about the upstream
    assert breaker.before_call() is True
