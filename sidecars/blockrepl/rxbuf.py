"""Receive buffers for ``asyncio.BufferedProtocol`` (pure): no per-read allocation, no joins.

Small messages (headers, acknowledgements, 4 KiB writes) are read into one fixed buffer and
parsed in place; a message with a large tail (a 1 MiB write) gets a buffer of its own, the
socket reads straight into it, and the parser hands out a view of it. Views into the shared
buffer are valid only until the parser returns (the next read reuses the memory): keep one
longer and copy it. Views of an :class:`Owned` buffer may be kept as long as wanted.
"""

from __future__ import annotations

SMALL = 256 << 10  # the shared buffer; every message read in place must fit in it
BIG = 64 << 10  # tails at least this long are read into a buffer of their own


class Owned(bytearray):
    """A buffer filled once for one message and never reused: views of it may be kept."""


def stable(part: bytes | bytearray | memoryview) -> bool:
    """Whether ``part`` stays valid after the parser returns (bytes, or a view of an Owned buffer)."""
    if isinstance(part, memoryview):
        return isinstance(part.obj, (bytes, Owned))
    return isinstance(part, bytes)


class RxBuffer:
    def __init__(self, size: int = SMALL) -> None:
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.start = self.end = 0
        self.big: memoryview | None = None  # the tail being read into its own buffer
        self.big_fill = 0

    def get_buffer(self) -> memoryview:
        if self.big is not None:
            return self.big[self.big_fill :]
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            self.compact()
        return self.mv[self.end :]

    def updated(self, n: int) -> None:
        if self.big is not None:
            self.big_fill += n
        else:
            self.end += n

    @property
    def available(self) -> int:
        return self.end - self.start

    def big_done(self) -> bool:
        return self.big is not None and self.big_fill == len(self.big)

    def compact(self) -> None:
        n = self.end - self.start
        if self.start:
            self.buf[:n] = self.mv[self.start : self.end]
        self.start, self.end = 0, n

    def ensure_room(self, total: int) -> None:
        """Make room for a message of ``total`` bytes starting at ``start`` (it must fit: < SMALL)."""
        if self.start + total > len(self.buf):
            self.compact()

    def start_big(self, skip: int, length: int) -> None:
        """The message at ``start`` has a ``skip``-byte head and a ``length``-byte tail that is not
        all here yet: move what arrived of the tail into its own buffer and read the rest there."""
        big = memoryview(Owned(length))
        have = self.end - self.start - skip
        big[:have] = self.mv[self.start + skip : self.end]
        self.start = self.end = 0
        self.big, self.big_fill = big, have

    def take_big(self) -> memoryview:
        assert self.big is not None
        big, self.big, self.big_fill = self.big, None, 0
        return big
