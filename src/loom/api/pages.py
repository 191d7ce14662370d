"""OpenAI's list envelope: `{object: list, data, first_id, last_id, has_more}`."""

from __future__ import annotations

from typing import Any


def page_of(rows: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": rows,
        "first_id": rows[0].get("id") if rows else None,
        "last_id": rows[-1].get("id") if rows else None,
        "has_more": has_more,
    }
