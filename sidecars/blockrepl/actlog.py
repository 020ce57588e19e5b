"""Activity log (pure): the extents where writes may be in flight, persisted before a write lands.

After a crash of a Primary, every extent listed here may differ between replicas, so they
are merged into every peer bitmap and resynced (checksum-based, so identical blocks cost
only a digest). An extent leaves the log (least recently used first) only when no write to
it is in flight; before it persists a shrunken log the caller makes the data written so far
durable (``fdatasync``: writes sit in the page cache, and a node that loses power loses
them) and persists the dirty bitmaps. So every write not yet durable on this disk lies in
an extent the log still lists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from hastack_common.config_blockrepl import AL_EXTENT


def extents(offset: int, length: int) -> range:
    if length <= 0:
        return range(0)
    return range(offset // AL_EXTENT, (offset + length - 1) // AL_EXTENT + 1)


class ActivityLog:
    def __init__(self, slots: int, active: list[int] | None = None) -> None:
        self.slots = slots
        self._lru: OrderedDict[int, int] = OrderedDict((e, 0) for e in (active or []))  # extent -> in flight

    def active(self) -> list[int]:
        return list(self._lru)

    def table(self) -> dict[int, int]:
        """The active extents (keys; values: writes in flight), for compiled checks: read only."""
        return self._lru

    def missing(self, offset: int, length: int) -> set[int]:
        return {e for e in extents(offset, length) if e not in self._lru}

    def covers(self, exts: Iterable[int]) -> bool:
        """Whether every extent (``extents()`` of a range) is active, without building a set."""
        lru = self._lru
        return all(e in lru for e in exts)

    def add(self, new: set[int], busy: Iterable[int] = frozenset()) -> list[int]:
        """Make ``new`` active; returns the evicted extents (idle ones, least recently used first).
        ``busy``: extents with writes in flight that this log does not count (the Primary's
        compiled serve loop tracks its own)."""
        evicted: list[int] = []
        keep = set(new) | set(busy)
        for e in sorted(new):
            if e in self._lru:
                continue
            if len(self._lru) >= self.slots:
                victim = next((x for x, n in self._lru.items() if n == 0 and x not in keep), None)
                if victim is None:  # every slot busy: grow past the limit rather than block (logged by caller)
                    pass
                else:
                    del self._lru[victim]
                    evicted.append(victim)
            self._lru[e] = 0
        return evicted

    def begin(self, exts: Iterable[int]) -> None:
        """A write (or a write batch) to these extents begins: one reference each, until end()."""
        lru = self._lru
        for e in exts:
            if e in lru:
                lru[e] += 1
                lru.move_to_end(e)

    def end(self, exts: Iterable[int]) -> None:
        lru = self._lru
        for e in exts:
            if lru.get(e, 0) > 0:
                lru[e] -= 1

    def in_flight(self) -> int:
        return sum(self._lru.values())
