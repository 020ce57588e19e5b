"""Member status: what ``hastack.io/member-status`` and the ``status`` command show.

The timeline of the last takeover records, per phase, the wall-clock time and the seconds since
the failure was detected: detected, lease_acquired, volume_promoted, mounted, serving.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from hastack_heartbeat import membership as m


def _wall(now_mono: float, at_mono: float) -> str:
    at = time.time() - (now_mono - at_mono)
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Timeline:
    """Phases of this member's latest takeover, on the monotonic clock."""

    start: float | None = None
    reason: str = ""
    previous: str = ""
    kind: str = "failover"  # failover | switchover | initial
    phases: dict[str, float] = field(default_factory=dict)
    takeovers: int = 0  # failovers and switchovers this member completed (not the initial start)

    def detected(self, now: float, reason: str, previous: str) -> None:
        if self.start is not None and "serving" not in self.phases and now - self.start < 60:
            return  # the same takeover: keep the earliest detection
        self.start, self.reason, self.previous, self.phases = now, reason, previous, {"detected": now}
        self.kind = ("switchover" if "released" in reason or "switchover" in reason
                     else "initial" if not previous else "failover")

    def phase(self, now: float, name: str) -> dict[str, float]:
        """Record ``name`` now; returns every phase's seconds since detection (for the histogram)."""
        if self.start is None:
            self.detected(now, "start-up", "")
        self.phases[name] = now
        if name == "serving" and self.kind != "initial":
            self.takeovers += 1
        start = self.start if self.start is not None else now
        return {k: v - start for k, v in self.phases.items() if k != "detected"} if name == "serving" else {}

    def to_json(self, now: float) -> dict[str, Any]:
        if self.start is None:
            return {}
        return {
            "kind": self.kind, "reason": self.reason, "from": self.previous,
            "phases": {k: {"at": _wall(now, v), "seconds": round(v - self.start, 3)}
                       for k, v in self.phases.items()},
        }


def member_status(st: m.State, now: float, timeline: Timeline, addrs: dict[str, Any]) -> dict[str, Any]:
    lease = st.lease
    return {
        "member": st.params.me,
        "role": st.role.value,
        "reason": st.reason,
        "epoch": st.epoch,
        "eligible": m.eligible(st, now),
        "blocked": m.block_reason(st),
        "fenceRemaining": None if st.fence_until is None else round(max(0.0, st.fence_until - now), 3),
        "peers": {
            p.name: {
                "state": p.state.value,
                "lastSeen": None if p.last_seen is None else round(now - p.last_seen, 3),
                "active": p.active,
                "epoch": p.epoch,
                "address": str(addrs[p.name][0]) if p.name in addrs else None,
            }
            for p in st.peers.values()
        },
        "lease": None if lease is None else {
            "holder": lease.holder,
            "resourceVersion": lease.resource_version,
            "observedAgo": round(now - st.observed_at, 3),
            "renewedAgo": None if st.renewed_at is None else round(now - st.renewed_at, 3),
            "apiReachable": st.api_ok,
            "outdated": dict(lease.outdated),
        },
        "timings": {"keepalive": st.params.timings.keepalive, "deadTime": st.params.timings.dead,
                    "leaseDuration": st.params.timings.lease_duration,
                    "renewDeadline": st.params.timings.renew_deadline},
        "failures": len([f for f in st.failures if now - f < st.params.failure_timeout]),
        "lastFailover": timeline.to_json(now),
        "failoverCount": timeline.takeovers,
    }


def _worst(peers: list[dict[str, Any]], key: str, good: str) -> str:
    bad = [str(p.get(key) or "Unknown") for p in peers if p.get(key) != good]
    return bad[0] if bad else good if peers else "None"


def volume_summary(blockrepl: dict[str, Any]) -> dict[str, Any]:
    """blockrepl's ``status`` reduced to the member status's ``volume`` (read by the operator's
    ``volume_status``): this replica's role and disk, and its links to the peers, worst first."""
    peers = list(blockrepl.get("peers") or [])
    syncing = [p["sync"] for p in peers if p.get("sync") and p.get("replication") in ("SyncSource", "SyncTarget")]
    out: dict[str, Any] = {
        "role": blockrepl.get("role", "Unknown"),
        "diskState": blockrepl.get("disk", "Unknown"),
        "connection": _worst(peers, "connection", "Connected"),
        "replication": _worst(peers, "replication", "Established"),
        "outOfSyncBytes": sum(int(p.get("out_of_sync_bytes") or 0) for p in peers),
    }
    if any(p.get("split_brain") for p in peers):
        out["splitBrain"] = True
    if syncing:
        out["syncProgress"] = f"{syncing[0].get('percent', 0)}%"
    return out
