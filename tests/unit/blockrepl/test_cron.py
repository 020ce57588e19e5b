"""Cron schedules for online verify."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl.cron import CronError, parse

T0 = datetime(2026, 11, 24, 22, 30)  # a Tuesday


@pytest.mark.parametrize("expr,after,expected", [
    ("*/15 * * * *", T0, datetime(2026, 11, 24, 22, 45)),
    ("0 3 * * *", T0, datetime(2026, 11, 25, 3, 0)),
    ("@daily", T0, datetime(2026, 11, 25, 0, 0)),
    ("@hourly", T0, datetime(2026, 11, 24, 23, 0)),
    ("30 2 * * 0", T0, datetime(2026, 11, 29, 2, 30)),  # Sunday
    ("30 2 * * 7", T0, datetime(2026, 11, 29, 2, 30)),  # 7 is Sunday too
    ("0 0 1 * *", T0, datetime(2026, 12, 1, 0, 0)),
    ("0 0 29 2 *", T0, datetime(2028, 2, 29, 0, 0)),  # leap day
    ("0 12 13 * 5", T0, datetime(2026, 11, 27, 12, 0)),  # day 13 OR Friday (Vixie cron)
    ("5-10/5 1,2 * * *", T0, datetime(2026, 11, 25, 1, 5)),
])  # fmt: skip
def test_next_after(expr: str, after: datetime, expected: datetime) -> None:
    assert parse(expr).next_after(after) == expected


@pytest.mark.parametrize("expr,field", [
    ("* * * *", "5 fields"), ("60 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day of month"),
    ("* * * 13 *", "month"), ("* * * * 8", "day of week"), ("*/0 * * * *", "minute"), ("a * * * *", "minute"),
    ("5-1 * * * *", "minute"),
])  # fmt: skip
def test_bad_schedules_name_the_field(expr: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        parse(expr)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["*/7 * * * *", "0 */5 * * *", "15 4 1,15 * *", "0 0 * * 1-5", "1 1 1 1 *"]),
       st.integers(0, 400 * 24 * 60))  # fmt: skip
def test_next_after_is_the_first_match(expr: str, offset_min: int) -> None:
    c = parse(expr)
    start = T0 + timedelta(minutes=offset_min)
    nxt = c.next_after(start)
    assert nxt > start and c.matches(nxt)
    if (nxt - start) < timedelta(days=3):  # brute force the gap: no earlier match
        t = start.replace(second=0) + timedelta(minutes=1)
        while t < nxt:
            assert not c.matches(t)
            t += timedelta(minutes=1)
