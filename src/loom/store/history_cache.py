"""The conversations this process read or wrote lately, decoded, so that a turn does not
read and decode the whole history again.

A turn on a conversation needs every item of it. Reading 1,000 items back and decoding
their JSON cost more than the rest of the turn; the history only grows at the end, so
most of that work repeats the previous turn's. The cache is never trusted blindly: each
read still asks the database, in one round trip, for the items past the last cached
position and for the conversation's deletion count, which every deletion of an item
bumps in the same transaction. If that count is not the cached one, something was
deleted, maybe by another process, and the history is read whole again. Appends need no
such check: positions are handed out under the conversation's row lock, so they commit
in order and a read past the last cached position finds every one of them. So several
processes sharing a database stay correct; a process only saves the work it has already
done, and the check costs the same at 10 items as at 10,000. (It used to count the
cached items, reading every one of their rows on each turn: at 1,000 items about 0.2 ms
of PostgreSQL CPU per read, against 0.04 ms for this check.)

Entries are dropped oldest first past `max_items` items in all, so memory stays bounded.
Cached item dicts are shared by the turns that read them: they are never mutated (a turn
builds new dicts for what it changes).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

Item = dict[str, Any]
Key = tuple[str, str]  # (owner, conversation id)

MAX_ITEMS = 50_000


@dataclass
class Cached:
    items: list[Item]
    last: int  # the position of the newest item; -1 when there is none
    deletions: int  # the conversation's deletion count when the items were read


class HistoryCache:
    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self._entries: OrderedDict[Key, Cached] = OrderedDict()
        self._max_items = max_items
        self._size = 0

    def get(self, key: Key) -> Cached | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Key, items: list[Item], last: int, deletions: int) -> None:
        self.drop(key)
        if len(items) > self._max_items:
            return
        self._entries[key] = Cached(items, last, deletions)
        self._size += len(items)
        while self._size > self._max_items:
            _, oldest = self._entries.popitem(last=False)
            self._size -= len(oldest.items)

    def extend(self, key: Key, start: int, items: list[Item]) -> None:
        """Items just appended at positions `start`...: kept if they follow the cached
        history directly, else the entry goes (the next read fills it whole)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.last != start - 1 and items:
            self.drop(key)
            return
        last = start + len(items) - 1 if items else entry.last
        self.put(key, entry.items + items, last, entry.deletions)

    def drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= len(entry.items)
