"""Keyset pagination shared by the stores: `after` cursors, order and `has_more`.

OpenAI's list endpoints page with an `after` id and a `limit`; the stores turn the cursor
into a position in a sort key and fetch `limit + 1` rows, so a page costs the same however
long the history behind it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

Order = Literal["asc", "desc"]
T = TypeVar("T")


def ascending(order: str) -> bool:
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    return order == "asc"


def check_limit(limit: int) -> int:
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    return limit


def beyond(
    key: Sequence[ColumnElement[Any]], cursor: Sequence[Any], asc: bool
) -> ColumnElement[bool]:
    """Rows strictly after `cursor` (the cursor row's key values) in the page order."""
    if len(key) == 1:
        return key[0] > cursor[0] if asc else key[0] < cursor[0]
    row, at = sa.tuple_(*key), sa.tuple_(*(sa.literal(v) for v in cursor))
    return row > at if asc else row < at


def ordered(key: Sequence[ColumnElement[Any]], asc: bool) -> list[ColumnElement[Any]]:
    return [column.asc() if asc else column.desc() for column in key]


def split_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """The first `limit` of `limit + 1` fetched rows, and whether there were more."""
    return list(rows[:limit]), len(rows) > limit
