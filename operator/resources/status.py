"""Status of a HACluster and its ReplicatedVolume from the members' own reports (pure).

Each member's heartbeat publishes ``hastack.io/member-status`` on its pod (JSON, with
``publishedAt``). The operator is the only writer of CR status; it reports what the
members said, and a member that stopped publishing as ``unknown`` — never as fine.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from hastack_common import consts
from hastack_operator.resources.conditions import Conditions

STALE_AFTER = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Member:
    name: str
    node: str
    phase: str
    active_label: bool
    report: dict[str, Any] | None  # None: no annotation, unreadable, or stale
    published: str = ""


def parse_time(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def member_from_pod(pod: dict[str, Any], now: dt.datetime) -> Member:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    raw = (meta.get("annotations") or {}).get(consts.ANNOTATION_MEMBER_STATUS)
    report: dict[str, Any] | None = None
    published = ""
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            published = str(parsed.get("publishedAt") or "")
            at = parse_time(published)
            if at is not None and now - at <= STALE_AFTER:
                report = parsed
    deleting = bool(meta.get("deletionTimestamp"))
    return Member(
        name=meta.get("name", ""), node=spec.get("nodeName") or "",
        phase="Terminating" if deleting else status.get("phase", "Unknown"),
        active_label=(meta.get("labels") or {}).get(consts.LABEL_ROLE) == consts.ROLE_ACTIVE,
        report=report, published=published)


def _state_seen_by(active: Member | None, m: Member) -> str:
    if m.report is None:
        return "unknown"
    if active is not None and active.report is not None and active.name != m.name:
        peer = (active.report.get("peers") or {}).get(m.name) or {}
        if peer.get("state"):
            return str(peer["state"])
    return "alive"


def cluster_status(generation: int, old: dict[str, Any], members: list[Member], expected: list[str],
                   now: dt.datetime) -> dict[str, Any]:
    by_name = {m.name: m for m in members}
    actives = [m for m in members if m.report is not None and m.report.get("role") == "active"]
    active = actives[0] if len(actives) == 1 else None
    out_members: list[dict[str, Any]] = []
    for name in expected:
        m = by_name.get(name)
        if m is None:
            out_members.append({"name": name, "node": "", "state": "unknown", "role": "absent"})
            continue
        out_members.append({
            "name": name, "node": m.node, "state": _state_seen_by(active, m),
            "role": (m.report or {}).get("role", "unknown"), "lastSeen": m.published or None,
        })
    conds = Conditions(generation, list(old.get("conditions") or []), now=now)
    reported = [m for m in out_members if m["state"] != "unknown"]
    healthy = [m for m in out_members if m["state"] == "alive"]
    failing_over = any((m.report or {}).get("role") in ("promoting", "demoting") for m in members)
    if len(actives) > 1:
        phase = "Failed"
        conds.error("Ready", "TwoActives", "members report active: " + ", ".join(m.name for m in actives))
    elif active is None:
        phase = "FailingOver" if failing_over else "Pending"
        blocked = [f"{m.name}: {m.report['blocked']}" for m in members if m.report and m.report.get("blocked")]
        conds.error("Ready", "NoActiveMember", f"{len(reported)}/{len(expected)} members report; none is active"
                    + "".join(f"; {b}" for b in blocked))
    elif len(healthy) < len(expected):
        phase = "Degraded"
        conds.success("Ready", "ActiveServing", f"{active.name} is active")
    else:
        phase = "Running"
        conds.success("Ready", "ActiveServing", f"{active.name} is active")
    missing = [m["name"] for m in out_members if m["state"] != "alive"]
    if missing:
        conds.success("Degraded", "MembersNotHealthy", "not alive: " + ", ".join(missing))
    else:
        conds.error("Degraded", "AllMembersHealthy", "every member is alive")
    if failing_over:
        conds.success("FailoverInProgress", "Promoting", "a member is promoting or demoting")
    else:
        conds.error("FailoverInProgress", "Stable", "no failover in progress")
    status: dict[str, Any] = {
        "phase": phase, "activeMember": active.name if active else "", "members": out_members,
        "observedGeneration": generation,
    }
    last = _last_failover(members)
    if last:
        status["lastFailover"] = last
    status["failoverCount"] = max([int(old.get("failoverCount") or 0),
                                   *[int((m.report or {}).get("failoverCount") or 0) for m in members]])
    status["conditions"] = conds.to_list()
    return status


def _last_failover(members: list[Member]) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for m in members:
        tl = (m.report or {}).get("lastFailover") or {}
        serving = (tl.get("phases") or {}).get("serving") or {}
        if not serving.get("at") or tl.get("kind") == "initial":
            continue
        entry = {"time": serving["at"], "from": tl.get("from", ""), "to": m.name, "reason": tl.get("reason", ""),
                 "durationSeconds": serving.get("seconds")}
        if best is None or entry["time"] > best["time"]:
            best = entry
    return best


def volume_status(generation: int, old: dict[str, Any], cluster: str, members: list[Member],
                  expected: list[str], now: dt.datetime) -> dict[str, Any]:
    by_name = {m.name: m for m in members}
    replicas = []
    for name in expected:
        m = by_name.get(name)
        vol = ((m.report or {}).get("volume") or {}) if m else {}
        replicas.append({
            "member": name, "node": m.node if m else "",
            "role": vol.get("role", "Unknown"), "diskState": vol.get("diskState", "Unknown"),
            "connection": vol.get("connection", "Unknown"), "replication": vol.get("replication", "Unknown"),
            "outOfSyncBytes": int(vol.get("outOfSyncBytes") or 0),
            **({"splitBrain": True} if vol.get("splitBrain") else {}),
            **({"syncProgress": vol["syncProgress"]} if vol.get("syncProgress") is not None else {}),
        })
    primaries = [r["member"] for r in replicas if r["role"] == "Primary"]
    conds = Conditions(generation, list(old.get("conditions") or []), now=now)
    states = [r["diskState"] for r in replicas]
    if primaries and all(s == "UpToDate" for s in states):
        conds.success("Ready", "AllUpToDate", "every replica is UpToDate")
        conds.error("Degraded", "AllUpToDate", "every replica is UpToDate")
    else:
        conds.add("Ready", "True" if "UpToDate" in states and primaries else "False",
                  "Serving" if primaries else "NoPrimary", f"disks: {'/'.join(states)}")
        conds.success("Degraded", "ReplicasNotUpToDate", f"disks: {'/'.join(states)}")
    split = [r["member"] for r in replicas if r.get("splitBrain")]
    if split:
        conds.success("SplitBrain", "SplitBrainDetected", "split brain seen by " + ", ".join(split))
    else:
        conds.error("SplitBrain", "NoSplitBrain", "no split brain")
    progress = [r["syncProgress"] for r in replicas if "syncProgress" in r]
    return {
        "primary": primaries[0] if len(primaries) == 1 else "", "replicas": replicas,
        "diskStates": "/".join(states), "syncProgress": progress[0] if progress else "",
        "cluster": cluster, "observedGeneration": generation, "conditions": conds.to_list(),
    }
