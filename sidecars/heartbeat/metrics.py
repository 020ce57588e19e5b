"""Prometheus metrics of the heartbeat sidecar (``hastack_heartbeat_*``), one registry per process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hastack_heartbeat.wire import REASONS

PEER_STATES = ("init", "alive", "warn", "dead")
ROLES = ("standby", "acquiring", "promoting", "active", "demoting")
PHASES = ("detected", "lease_acquired", "volume_promoted", "mounted", "serving")
TAKEOVER_KINDS = ("initial", "failover", "switchover")  # status.Timeline.kind
PUBLISH_RESULTS = ("ok", "error")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.peer_state = Gauge("hastack_heartbeat_peer_state", "1 for the peer's current state (init, "
                                "alive, warn, dead), 0 for the others", ["peer", "state"], registry=r)
        self.last_seen = Gauge("hastack_heartbeat_peer_last_seen_seconds", "Seconds since the last valid "
                               "packet from the peer (-1: never)", ["peer"], registry=r)
        self.role = Gauge("hastack_heartbeat_role", "1 for this member's current role", ["role"], registry=r)
        self.failovers = Counter("hastack_heartbeat_failovers_total", "Times this member became active, by "
                                 "reason", ["reason"], registry=r)
        self.demotions = Counter("hastack_heartbeat_demotions_total", "Times this member stopped being "
                                 "active, by reason", ["reason"], registry=r)
        self.lease_renew_failures = Counter("hastack_heartbeat_lease_renew_failures_total", "Lease renewals "
                                            "that failed (API server unreachable or conflict)", registry=r)
        self.bad_packets = Counter("hastack_heartbeat_bad_packets_total", "Datagrams dropped, by reason",
                                   ["reason"], registry=r)
        self.packets = Counter("hastack_heartbeat_packets_total", "Valid datagrams, by kind and direction",
                               ["kind", "direction"], registry=r)
        self.eligible = Gauge("hastack_heartbeat_eligible", "1 while this member may become active (not held "
                              "off by failures, not recorded Outdated), else 0", registry=r)
        self.fence_remaining = Gauge("hastack_heartbeat_fence_remaining_seconds", "How long the app may "
                                     "still run without a renewed right to stay active (0 when not active)",
                                     registry=r)
        self.failover_duration = Histogram(
            "hastack_heartbeat_failover_duration_seconds", "Seconds from the detection of a failed active to "
            "each phase of this member's takeover", ["phase"], registry=r,
            buckets=(0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 60))
        for reason in REASONS:
            self.bad_packets.labels(reason)
        self.status_publishes = Counter("hastack_heartbeat_status_publishes_total", "Writes of the "
                                        "hastack.io/member-status annotation on this pod, by result (ok, "
                                        "error)", ["result"], registry=r)
        for phase in PHASES:
            self.failover_duration.labels(phase)
        # every series exists from the start at 0, so that increase() sees the first takeover
        for kind in TAKEOVER_KINDS:
            self.failovers.labels(kind)
        for result in PUBLISH_RESULTS:
            self.status_publishes.labels(result)
        self.set_role("standby")
        self.lease_renew_failures.inc(0)

    def set_role(self, role: str) -> None:
        for name in ROLES:
            self.role.labels(name).set(1 if name == role else 0)

    def set_peer(self, peer: str, state: str) -> None:
        for name in PEER_STATES:
            self.peer_state.labels(peer, name).set(1 if name == state else 0)
