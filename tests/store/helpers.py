"""Small builders shared by the store tests."""

from __future__ import annotations

import uuid
from typing import Any


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def message_item(text: str, role: str = "user") -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": role,
        "content": [{"type": "input_text" if role == "user" else "output_text", "text": text}],
    }


def response(
    created_at: float = 1_700_000_000, previous: str | None = None, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": "test/model",
        "previous_response_id": previous,
        "output": [],
    }


def conversation(metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": new_id("conv"),
        "object": "conversation",
        "created_at": 1_700_000_000,
        "metadata": metadata or {},
    }
