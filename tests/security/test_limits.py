"""KeyLimiter and check_count on their own, with a hand-driven clock."""

from __future__ import annotations

import pytest

from loom.errors import InvalidRequestError, RateLimitError
from loom.security.limits import KeyLimiter, check_count


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refill_and_retry_after():
    clock = Clock()
    limiter = KeyLimiter(concurrent=0, per_minute=2, clock=clock)
    for _ in range(2):
        limiter.enter("alice")
        limiter.leave("alice")
    with pytest.raises(RateLimitError) as caught:
        limiter.enter("alice")
    assert caught.value.status_code == 429 and caught.value.retry_after == 30
    limiter.enter("bob")  # another key has its own bucket
    limiter.leave("bob")
    clock.now += 20  # two thirds of a token back: still refused, 10 s to go
    with pytest.raises(RateLimitError) as caught:
        limiter.enter("alice")
    assert caught.value.retry_after == 10
    clock.now += 10
    limiter.enter("alice")
    limiter.leave("alice")


def test_concurrency_counts_requests_in_flight():
    limiter = KeyLimiter(concurrent=2, per_minute=0)
    limiter.enter("alice")
    limiter.enter("alice")
    with pytest.raises(RateLimitError) as caught:
        limiter.enter("alice")
    assert caught.value.retry_after == 1
    limiter.enter("bob")
    limiter.leave("alice")
    limiter.enter("alice")


def test_check_count_names_the_field():
    check_count([1, 2], 2, "tools")
    check_count(None, 0, "tools")
    check_count("a long string is not a list", 1, "input")
    with pytest.raises(InvalidRequestError) as caught:
        check_count([1, 2, 3], 2, "tools")
    assert caught.value.param == "tools"
    assert caught.value.code == "array_above_max_length"
    assert "maximum length 2" in caught.value.message
