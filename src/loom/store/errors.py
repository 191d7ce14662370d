"""Exceptions the stores raise for writes that cannot be stored as asked.

Reads never raise for a missing or foreign object (they return None or False); these are
for writes, so the HTTP edge can map them (409) without knowing SQLAlchemy's exceptions.
"""

from __future__ import annotations


class DuplicateIdError(ValueError):
    """An id is already taken: by another owner's object, or twice in one conversation."""
