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
