"""Per-probe schedules: each probe on its own interval with jitter, under a global concurrency cap.

A probe that overruns its slot skips the missed slots instead of bunching them; start times are
spread over the jitter so that a reload or a start-up does not fire every probe at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hastack_mon.probes import Result

log = logging.getLogger(__name__)
RunProbe = Callable[[], Awaitable[Result]]
OnResult = Callable[[Result], None]


@dataclass(frozen=True)
class Schedule:
    interval: float
    jitter: float


def next_start(previous: float, now: float, s: Schedule, rng: random.Random) -> float:
    """The next start time after a run scheduled at ``previous`` that finished at ``now``."""
    nxt = previous + s.interval + (rng.uniform(-s.jitter, s.jitter) if s.jitter else 0.0)
    if nxt < now:  # overran: skip the missed slots, keep the phase
        missed = int((now - nxt) // s.interval) + 1
        nxt += missed * s.interval
    return nxt


async def probe_loop(
    run: RunProbe, on_result: OnResult, s: Schedule, cap: Callable[[], asyncio.Semaphore], rng: random.Random
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rng.uniform(0, s.jitter) if s.jitter else 0)
    scheduled = loop.time()
    while True:
        async with cap():  # the cap in force now (a reload may replace it)
            result = await run()
        try:
            on_result(result)
        except Exception:  # a bug in evaluation must not end this probe's schedule
            log.exception("handling a probe result failed")
        scheduled = next_start(scheduled, loop.time(), s, rng)
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
