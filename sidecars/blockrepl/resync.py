"""Resync and online verify: checksum-based, rate-limited, driven by the SyncTarget.

The SyncTarget walks the sync set (union of both sides' bitmaps, or every block for a full
sync) in runs of up to 128 KiB: it sends the SHA-256 of its own copy, the SyncSource answers
"same" (nothing sent) or with its data. Both use the one ordered link, so a client write
that reaches the target after a resync answer always lands after it. The source clears its
bitmap only for runs the target confirmed applied (RS_ACK), so an interrupted resync resumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hastack_blockrepl.bitmap import Bitmap
from hastack_common.config_blockrepl import BLOCK

RUN_BLOCKS = 32  # 128 KiB per request
WINDOW = 16  # requests in flight


def digest(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


class RateLimiter:
    """Token bucket in bytes/s with a one-second burst; clock injected for tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(rate, 1.0)
        self._now = clock
        self.tokens = 0.0
        self.last = self._now()

    def delay(self, nbytes: int) -> float:
        """Take ``nbytes``; return how long to wait before using them."""
        now = self._now()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def take(self, nbytes: int) -> None:
        d = self.delay(nbytes)
        if d > 0:
            await asyncio.sleep(d)


@dataclass
class Progress:
    total: int = 0  # bytes in the sync set
    done: int = 0
    sent: int = 0  # bytes that had to travel (differing blocks)
    started: float = field(default_factory=time.monotonic)
    rate: float = 0.0  # bytes/s, smoothed
    _last: float = field(default_factory=time.monotonic)
    _last_done: int = 0

    def add(self, nbytes: int, sent: bool) -> None:
        self.done += nbytes
        if sent:
            self.sent += nbytes
        now = time.monotonic()
        if now - self._last >= 0.5:
            inst = (self.done - self._last_done) / (now - self._last)
            self.rate = inst if not self.rate else 0.5 * self.rate + 0.5 * inst
            self._last, self._last_done = now, self.done

    def status(self) -> dict[str, float | int | None]:
        pct = 100.0 if not self.total else round(100.0 * self.done / self.total, 1)
        elapsed = time.monotonic() - self.started
        rate = self.rate or (self.done / elapsed if elapsed > 0 else 0.0)
        eta = None if rate <= 0 else round((self.total - self.done) / rate, 1)
        return {
            "percent": pct,
            "total_bytes": self.total,
            "done_bytes": self.done,
            "sent_bytes": self.sent,
            "rate_bytes_per_second": round(rate),
            "eta_seconds": eta,
        }


def sync_set(nbits: int, mine: Bitmap, theirs: Bitmap | None, full: bool) -> Bitmap:
    s = Bitmap(nbits)
    if full:
        s.set_all()
        return s
    s.merge(mine)
    if theirs is not None:
        s.merge(theirs)
    return s


def run_span(first: int, n: int, size: int) -> tuple[int, int]:
    off = first * BLOCK
    return off, min(n * BLOCK, size - off)
