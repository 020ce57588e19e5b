"""Prometheus metrics ``hastack_blockrepl_*`` (one registry per replica process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROLES = ("Primary", "Secondary")
DISKS = ("UpToDate", "Inconsistent", "Outdated", "Diskless")
CONNECTIONS = ("StandAlone", "Connecting", "Connected")
REPLICATIONS = ("Off", "Established", "SyncSource", "SyncTarget")
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


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
        self.latency_h = Histogram(
            p + "request_seconds", "client request latency", ["resource", "op"], buckets=BUCKETS, registry=r
        )
        self.io_errors = Counter(p + "io_errors", "I/O errors on the backing disk", ["resource"], registry=r).labels(
            resource
        )
        self.auth_failures = Counter(
            p + "auth_failures", "peers that failed authentication", ["resource"], registry=r
        ).labels(resource)
        self.requests = Counter(p + "requests", "client requests served", ["resource", "op"], registry=r)
        self.suspended = Gauge(
            p + "suspended",
            "1 while client writes are held (fencing, deadline, handshake)",
            ["resource"],
            registry=r,
        ).labels(resource)
        self._lat: dict[str, Any] = {}
        self._req: dict[str, Any] = {}

    def latency(self, op: str, seconds: float) -> None:
        h = self._lat.get(op)
        if h is None:
            h = self._lat[op] = self.latency_h.labels(self.resource, op)
            self._req[op] = self.requests.labels(self.resource, op)
        h.observe(seconds)
        self._req[op].inc()

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
