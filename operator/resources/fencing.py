"""Lost nodes (pure): fence the Kubernetes way, then replace the replica if the node stays lost.

A member whose node has not been Ready for ``fenceAfter`` is fenced: the node is tainted
``node.kubernetes.io/out-of-service`` and the member pod force-deleted, so the StatefulSet can
recreate it (the Lease has already moved the active elsewhere). If the node stays lost past
``replaceAfter``, the member's PVC is deleted so a fresh replica is provisioned on another
node and fully synced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


@dataclass(frozen=True)
class NodeHealth:
    name: str
    ready: bool
    since: dt.datetime | None  # when Ready last changed
    tainted: bool


@dataclass(frozen=True)
class Action:
    kind: str  # "taint" | "force-delete" | "replace"
    member: str
    node: str
    reason: str


def node_health(node: dict[str, Any]) -> NodeHealth:
    conditions = (node.get("status") or {}).get("conditions") or []
    cond: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    since = None
    if cond.get("lastTransitionTime"):
        since = dt.datetime.fromisoformat(str(cond["lastTransitionTime"]).replace("Z", "+00:00"))
    taints = (node.get("spec") or {}).get("taints") or []
    return NodeHealth(node["metadata"]["name"], cond.get("status") == "True", since,
                      any(t.get("key") == OUT_OF_SERVICE for t in taints))


def plan(policy: str, fence_after: float, replace_after: float, members: dict[str, str],
         nodes: dict[str, NodeHealth], claims: set[str], now: dt.datetime) -> list[Action]:
    """``members``: member pod -> node it is bound to; ``claims``: member PVC names that exist."""
    if policy != "OutOfService":
        return []
    actions: list[Action] = []
    for member, node_name in sorted(members.items()):
        node = nodes.get(node_name)
        if node is None or node.ready or node.since is None:
            continue
        lost_for = (now - node.since).total_seconds()
        if lost_for < fence_after:
            continue
        why = f"node {node_name} not Ready for {lost_for:.0f}s"
        if not node.tainted:
            actions.append(Action("taint", member, node_name, why))
        actions.append(Action("force-delete", member, node_name, why))
        if replace_after > 0 and lost_for >= replace_after and f"backing-{member}" in claims:
            actions.append(Action("replace", member, node_name, f"{why}: replacing its replica elsewhere"))
    return actions
