"""Cron schedules (pure) for online verify: ``ReplicatedVolume.spec.verify`` is a cron string.

Five fields — minute hour day-of-month month day-of-week — with ``*``, numbers, lists
(``1,15``), ranges (``1-5``) and steps (``*/15``, ``0-30/10``); day of week 0-7 (0 and 7
are Sunday); when both day fields are restricted a day matching either runs (as Vixie
cron). Also ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}  # fmt: skip
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


class CronError(ValueError):
    """A schedule that does not parse; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_any: bool
    dow_any: bool

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        dom, dow = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after ``t`` (within ~5 years, else CronError)."""
        t = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = t + timedelta(days=366 * 5)
        while t < end:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            day_ok = self.matches(t.replace(hour=min(self.hours), minute=min(self.minutes)))
            if not day_ok:
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if self.matches(t):
                return t
            t += timedelta(minutes=1)
        raise CronError("schedule never fires")


def _field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        try:
            step = int(step_s) if step_s else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a_s, b_s = rng.split("-", 1)
                a, b = int(a_s), int(b_s)
            else:
                a = b = int(rng)
                if step_s:
                    b = hi
        except ValueError:
            raise CronError(f"{name}: {part!r} is not a number, range, list or step") from None
        if step < 1 or a < lo or b > hi or a > b:
            raise CronError(f"{name}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


def parse(expr: str) -> Cron:
    text = ALIASES.get(expr.strip(), expr.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron schedule {expr!r} needs 5 fields (minute hour day month weekday), got {len(parts)}")
    vals = [_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in vals[4])
    return Cron(vals[0], vals[1], vals[2], vals[3], weekdays, parts[2] == "*", parts[4] == "*")
