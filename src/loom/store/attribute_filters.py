"""OpenAI attribute filters turned into SQL, so a filter decides membership in the query.

A filter is a comparison `{"type": eq|ne|gt|gte|lt|lte|in|nin, "key", "value"}` or a
compound `{"type": and|or, "filters": [...]}`, nested to any depth. Attributes are a JSON
object on the vector store file (strings, numbers, booleans). The rules:
- `eq`, `in` and the orderings match only an attribute of the value's own type (a number
  never equals the string "1"); strings order as text, so ISO dates compare as dates.
- `ne` and `nin` are the negations of `eq` and `in`: a file without the key matches them.
A malformed filter or an unknown type raises `InvalidRequestError` naming `filters`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from loom.errors import InvalidRequestError

COMPARISONS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"})
COMPOUNDS = frozenset({"and", "or"})
_MAX_DEPTH = 16


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")


def validate(filters: Any, param: str = "filters", depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise _bad("Filters are nested too deeply.", param)
    if not isinstance(filters, dict):
        raise _bad("A filter must be an object.", param)
    kind = filters.get("type")
    if kind in COMPOUNDS:
        inner = filters.get("filters")
        if not isinstance(inner, list) or not inner:
            raise _bad(f"A '{kind}' filter needs a non-empty 'filters' list.", f"{param}.filters")
        for i, f in enumerate(inner):
            validate(f, f"{param}.filters[{i}]", depth + 1)
        return
    if kind not in COMPARISONS:
        raise _bad(
            f"Unknown filter type {kind!r}; expected one of "
            f"{', '.join(sorted(COMPARISONS | COMPOUNDS))}.",
            f"{param}.type",
        )
    key, value = filters.get("key"), filters.get("value")
    if not isinstance(key, str) or not key:
        raise _bad("A comparison filter needs a non-empty string 'key'.", f"{param}.key")
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(_scalar(v) for v in value):
            raise _bad(
                f"An '{kind}' filter needs a list of strings, numbers or booleans.",
                f"{param}.value",
            )
    elif not _scalar(value):
        raise _bad("A filter's 'value' must be a string, number or boolean.", f"{param}.value")
    if kind in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise _bad(f"A '{kind}' filter compares numbers or strings.", f"{param}.value")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def clause(
    filters: dict[str, Any], column: ColumnElement[Any], dialect: str
) -> ColumnElement[bool]:
    """The SQL condition for a validated filter over the JSON-text `column`."""
    kind = filters["type"]
    if kind in COMPOUNDS:
        parts = [clause(f, column, dialect) for f in filters["filters"]]
        return sa.and_(*parts) if kind == "and" else sa.or_(*parts)
    access = _Sqlite(column, filters["key"]) if dialect == "sqlite" else _Pg(column, filters["key"])
    value = filters["value"]
    if kind == "eq":
        return access.equals(value)
    if kind == "ne":
        return sa.not_(sa.func.coalesce(access.equals(value), sa.false()))
    if kind == "in":
        return sa.or_(sa.false(), *(access.equals(v) for v in value))
    if kind == "nin":
        return sa.not_(
            sa.func.coalesce(sa.or_(sa.false(), *(access.equals(v) for v in value)), sa.false())
        )
    return access.compare(kind, value)


def _compare(left: ColumnElement[Any], op: str, right: Any) -> ColumnElement[bool]:
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
        "eq": left == right,
    }[op]


class _Sqlite:
    def __init__(self, column: ColumnElement[Any], key: str) -> None:
        path = '$."' + key.replace('"', '""') + '"'
        self.type = sa.func.json_type(column, path)
        self.value = sa.func.json_extract(column, path)

    def _of_type(self, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            return self.type == ("true" if value else "false")
        if isinstance(value, int | float):
            return self.type.in_(("integer", "real"))
        return self.type == "text"

    def equals(self, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            return self._of_type(value)
        return sa.and_(self._of_type(value), self.value == value)

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        return sa.and_(self._of_type(value), _compare(self.value, op, value))


class _Pg:
    def __init__(self, column: ColumnElement[Any], key: str) -> None:
        element = sa.cast(column, JSONB)[key]
        self.type = sa.func.jsonb_typeof(element)
        self.text = sa.cast(column, JSONB)[key].astext
        # CASE keeps the cast from ever seeing a non-number (AND does not short-circuit).
        self.number = sa.case(
            (self.type == "number", sa.cast(self.text, sa.Float)), else_=sa.null()
        )

    def equals(self, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            return sa.and_(self.type == "boolean", self.text == ("true" if value else "false"))
        if isinstance(value, int | float):
            return self.number == float(value)
        return sa.and_(self.type == "string", self.text == value)

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        if isinstance(value, int | float):
            return _compare(self.number, op, float(value))
        return sa.and_(self.type == "string", _compare(self.text, op, value))
