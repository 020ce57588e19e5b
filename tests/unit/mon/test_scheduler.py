from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from hastack_mon.scheduler import Schedule, next_start


def test_on_time_keeps_the_phase() -> None:
    assert next_start(10.0, 10.2, Schedule(1.0, 0.0), random.Random(0)) == 11.0


def test_overrun_skips_missed_slots() -> None:
    assert next_start(10.0, 13.5, Schedule(1.0, 0.0), random.Random(0)) == 14.0


@given(
    prev=st.floats(0, 1e6),
    took=st.floats(0, 100),
    interval=st.floats(0.01, 60),
    jitter_frac=st.floats(0, 0.5),
    seed=st.integers(0, 2**32),
)
def test_next_start_is_in_the_future_and_near_a_slot(
    prev: float, took: float, interval: float, jitter_frac: float, seed: int
) -> None:
    s = Schedule(interval, interval * jitter_frac)
    now = prev + took
    nxt = next_start(prev, now, s, random.Random(seed))
    assert nxt >= now - 1e-6
    assert nxt <= max(now, prev) + interval + s.jitter + 1e-6


def test_a_failing_result_handler_does_not_end_the_schedule() -> None:
    import asyncio

    from hastack_mon.probes import Result
    from hastack_mon.scheduler import probe_loop

    seen: list[Result] = []

    async def run() -> Result:
        return Result(True, 0.0, "ok")

    def on_result(r: Result) -> None:
        seen.append(r)
        raise RuntimeError("bug in evaluation")

    async def go() -> None:
        cap = asyncio.Semaphore(1)
        task = asyncio.create_task(probe_loop(run, on_result, Schedule(0.01, 0.0), lambda: cap, random.Random(1)))
        for _ in range(500):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(go())
    assert len(seen) >= 3
