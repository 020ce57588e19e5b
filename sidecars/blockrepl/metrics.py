"""Prometheus metrics ``hastack_blockrepl_*`` (one registry per replica process)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

ROLES = ("Primary", "Secondary")
DISKS = ("UpToDate", "Consistent", "Inconsistent", "Outdated", "Diskless")
CONNECTIONS = ("StandAlone", "Connecting", "Connected")
REPLICATIONS = ("Off", "Established", "SyncSource", "SyncTarget")
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
PREFIX = "hastack_blockrepl_"


class Latencies:
    """Client request latencies per op, kept as plain bucket counts and exported at a scrape as
    the histogram ``request_seconds`` and the counter ``requests``. Recording one is a bisect
    and two additions on the event loop; prometheus_client's Histogram and Counter take a lock
    per update, a few microseconds on every write of the hot path."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.counts: dict[str, list[int]] = {}  # op -> requests per bucket, the last for +Inf
        self.sums: dict[str, float] = {}
        # writes answered elsewhere (the Primary's compiled serve loop): () -> (counts, sum)
        self.sources: list[Callable[[], tuple[list[int], float]]] = []

    def observe(self, op: str, seconds: float, n: int = 1) -> None:
        """``n`` requests of ``op`` that took ``seconds`` each (a write batch is answered at once)."""
        counts = self.counts.get(op)
        if counts is None:
            counts = self.counts[op] = [0] * (len(BUCKETS) + 1)
            self.sums[op] = 0.0
        counts[bisect_left(BUCKETS, seconds)] += n  # the first bound >= seconds: le is inclusive
        self.sums[op] += seconds * n

    def collect(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(PREFIX + "request_seconds", "client request latency", labels=["resource", "op"])
        total = CounterMetricFamily(PREFIX + "requests", "client requests served", labels=["resource", "op"])
        ops = {op: (list(counts), self.sums.get(op, 0.0)) for op, counts in list(self.counts.items())}
        for source in self.sources:  # (the scrape may run in another thread)
            more, more_sum = source()
            counts, seconds = ops.get("write", ([0] * len(more), 0.0))
            if any(more):
                ops["write"] = ([a + b for a, b in zip(counts, more, strict=True)], seconds + more_sum)
        for op, (counts, seconds) in ops.items():
            cum, buckets = 0, []
            for bound, n in zip((*BUCKETS, math.inf), counts, strict=True):
                cum += n
                buckets.append((floatToGoString(bound), cum))
            hist.add_metric([self.resource, op], buckets, seconds)
            total.add_metric([self.resource, op], cum)
        yield hist
        yield total


class Metrics:
    def __init__(self, resource: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, p = self.registry, "hastack_blockrepl_"
        self.resource = resource
        self.role = Gauge(p + "role", "1 for the replica's current role", ["resource", "role"], registry=r)
        self.disk = Gauge(p + "disk_state", "1 for the local disk state", ["resource", "state"], registry=r)
        self.conn = Gauge(
            p + "connection_state",
            "1 for each peer's connection state",
            ["resource", "peer", "state"],
            registry=r,
        )
        self.repl = Gauge(
            p + "replication_state",
            "1 for each peer's replication state",
            ["resource", "peer", "state"],
            registry=r,
        )
        self.split_brain = Gauge(
            p + "split_brain",
            "1 while split brain with the peer is unresolved",
            ["resource", "peer"],
            registry=r,
        )
        self.oos = Gauge(
            p + "out_of_sync_bytes", "bytes marked out of sync for the peer", ["resource", "peer"], registry=r
        )
        self.resync_bytes = Counter(
            p + "resync_bytes",
            "bytes covered by resync (sent or found identical)",
            ["resource", "peer"],
            registry=r,
        )
        self.resync_rate = Gauge(p + "resync_bytes_per_second", "current resync rate", ["resource", "peer"], registry=r)
        self.lag = Gauge(
            p + "protocol_a_lag_bytes",
            "bytes sent to the peer and not yet acknowledged",
            ["resource", "peer"],
            registry=r,
        )
        self.latencies = Latencies(resource)
        r.register(self.latencies)
        self.io_errors = Counter(p + "io_errors", "I/O errors on the backing disk", ["resource"], registry=r).labels(
            resource
        )
        self.auth_failures = Counter(
            p + "auth_failures", "peers that failed authentication", ["resource"], registry=r
        ).labels(resource)
        self.suspended = Gauge(
            p + "suspended",
            "1 while client writes are held (fencing, deadline, handshake)",
            ["resource"],
            registry=r,
        ).labels(resource)
        self.latency = self.latencies.observe

    def update(self, engine: Any) -> None:
        r = self.resource
        for role in ROLES:
            self.role.labels(r, role).set(1 if engine.role == role else 0)
        for d in DISKS:
            self.disk.labels(r, d).set(1 if engine.sb.disk_state == d else 0)
        self.suspended.set(1 if engine.gate.submit or engine.gate.ack else 0)

    def update_peer(self, node_id: int, conn: str, repl: str, oos: int, lag: int, split_brain: bool) -> None:
        r, peer = self.resource, str(node_id)
        for c in CONNECTIONS:
            self.conn.labels(r, peer, c).set(1 if conn == c else 0)
        for s in REPLICATIONS:
            self.repl.labels(r, peer, s).set(1 if repl == s else 0)
        self.oos.labels(r, peer).set(oos)
        self.lag.labels(r, peer).set(lag)
        self.split_brain.labels(r, peer).set(1 if split_brain else 0)
