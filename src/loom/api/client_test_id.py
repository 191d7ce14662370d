"""The `X-Loom-Test-Id` header, handed from the HTTP request to record/replay.

A test suite sends `X-Loom-Test-Id: <test node id>` so that identical requests made by
different tests map to different recordings. This ASGI middleware copies the header into
`current_test_id`, the context variable the recording provider reads when it builds a key.
"""

from __future__ import annotations

from loom.inference.recording import current_test_id

TEST_ID_HEADER = b"x-loom-test-id"


class TestIdMiddleware:
    """Pure ASGI middleware: nearly free when the header is absent."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == TEST_ID_HEADER:
                    token = current_test_id.set(value.decode("utf-8", "replace"))
                    try:
                        return await self.app(scope, receive, send)
                    finally:
                        current_test_id.reset(token)
        return await self.app(scope, receive, send)
