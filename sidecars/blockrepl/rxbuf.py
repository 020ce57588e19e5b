"""Receive buffers for ``asyncio.BufferedProtocol`` (pure): no per-read allocation, no joins.

Small messages (headers, acknowledgements, 4 KiB writes) are read into one fixed buffer and
parsed in place; a message with a large tail (a 1 MiB write) gets a buffer of its own, the
socket reads straight into it, and the parser hands out a view of it. Views into the shared
buffer are valid only until the parser returns (the next read reuses the memory): keep one
longer and copy it. Views of an :class:`Owned` buffer may be kept as long as wanted.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
SMALL = 256 << 10  # the shared buffer; every message read in place must fit in it
BIG = 64 << 10  # tails at least this long are read into a buffer of their own


class Owned(bytearray):
    """A buffer filled once for one message and never reused: views of it may be kept."""


def stable(part: bytes | bytearray | memoryview) -> bool:
    """Whether ``part`` stays valid after the parser returns (bytes, or a view of an Owned buffer)."""
    if isinstance(part, memoryview):
        return isinstance(part.obj, (bytes, Owned))
    return isinstance(part, bytes)


_IDLE_REFS = 3  # a pooled buffer nobody uses: the pool's list, the loop variable, getrefcount's argument


class BufferPool:
    """Owned buffers for large payloads, reused once nothing refers to them any more.

    A view of a buffer keeps a reference to it (CPython reference counting), so a buffer
    whose only holder is the pool cannot be in use anywhere: handing it out again is safe,
    and saves zeroing a fresh 1 MiB buffer per request. Sizes are rounded up to a power of
    two; at most ``keep_bytes`` per size are kept (at least two buffers).
    """

    def __init__(self, keep_bytes: int = 64 << 20) -> None:
        self.keep_bytes = keep_bytes
        self.free: dict[int, list[Owned]] = {}

    def get(self, length: int) -> memoryview:
        size = max(BIG, 1 << max(length - 1, 1).bit_length())
        bufs = self.free.setdefault(size, [])
        for buf in bufs:
            if sys.getrefcount(buf) == _IDLE_REFS:
                return memoryview(buf)[:length]
        new = Owned(size)
        if len(bufs) < max(2, self.keep_bytes // size):
            bufs.append(new)
        return memoryview(new)[:length]


POOL = BufferPool()


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

    def big_missing(self) -> int:
        """Bytes of the large tail still to come (0 when none is being read)."""
        return len(self.big) - self.big_fill if self.big is not None else 0

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
        big = POOL.get(length)
        have = self.end - self.start - skip
        big[:have] = self.mv[self.start + skip : self.end]
        self.start = self.end = 0
        self.big, self.big_fill = big, have

    def take_big(self) -> memoryview:
        assert self.big is not None
        big, self.big, self.big_fill = self.big, None, 0
        return big


def keep_large_buffers() -> None:
    """Have glibc serve 1 MiB payload buffers from the heap and keep freed memory for the next
    one, instead of a fresh mmap (and a page fault per 4 KiB) for every request. Process-wide,
    idempotent; a no-op where mallopt is missing."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):
        pass
