"""Rate limiter, sync-set construction, progress."""

from __future__ import annotations

from hastack_blockrepl.bitmap import Bitmap
from hastack_blockrepl.resync import Progress, RateLimiter, run_span, sync_set


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t


def test_rate_limiter_holds_the_rate() -> None:
    clk = Clock()
    rl = RateLimiter(1000, clock=clk.monotonic)
    waited = sum(rl.delay(100) for _ in range(10))
    assert waited > 0.5  # no burst credit at start: the last of 1000 bytes waits ~1 s
    clk.t += 10  # idle: burst capped at one second of rate
    assert rl.delay(1000) == 0.0
    assert rl.delay(500) > 0.4


def test_sync_set_union_and_full() -> None:
    a, b = Bitmap(10), Bitmap(10)
    a.mark(0, 1)
    b.mark(9 * 4096, 1)
    assert sync_set(10, a, b, False).count() == 2
    assert sync_set(10, a, b, True).count() == 10
    assert run_span(9, 4, 10 * 4096 - 100) == (9 * 4096, 4096 - 100)


def test_progress_eta() -> None:
    p = Progress(total=1000)
    p.add(500, True)
    st = p.status()
    assert st["percent"] == 50.0 and st["sent_bytes"] == 500
