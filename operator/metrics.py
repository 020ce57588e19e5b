"""Prometheus metrics of the operator (prefix hastack_operator_)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

HANDLER_RUNS = Counter("hastack_operator_handler_runs_total", "Handler invocations.", ["kind", "handler"])
HANDLER_ERRORS = Counter("hastack_operator_handler_errors_total", "Handler invocations that raised.",
                         ["kind", "handler"])
HANDLER_SECONDS = Histogram("hastack_operator_handler_duration_seconds", "Handler run time.",
                            ["kind", "handler"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LEADER = Gauge("hastack_operator_leader", "1 while this instance holds the leader Lease.")


@contextmanager
def observe(kind: str, handler: str) -> Iterator[None]:
    HANDLER_RUNS.labels(kind, handler).inc()
    t0 = time.monotonic()
    try:
        yield
    except Exception:
        HANDLER_ERRORS.labels(kind, handler).inc()
        raise
    finally:
        HANDLER_SECONDS.labels(kind, handler).observe(time.monotonic() - t0)

MANAGED_OBJECTS = Gauge("hastack_operator_managed_objects", "Objects the operator keeps applied, by kind.", ["kind"])
_managed: dict[str, dict[str, int]] = {}


def record_managed(owner_uid: str, objects: list[dict[str, object]]) -> None:
    """Remember what one custom resource owns; the gauge is the sum over all of them."""
    counts: dict[str, int] = {}
    for obj in objects:
        kind = str(obj.get("kind"))
        counts[kind] = counts.get(kind, 0) + 1
    _managed[owner_uid] = counts
    totals: dict[str, int] = {}
    for per_owner in _managed.values():
        for kind, n in per_owner.items():
            totals[kind] = totals.get(kind, 0) + n
    for kind, n in totals.items():
        MANAGED_OBJECTS.labels(kind).set(n)
