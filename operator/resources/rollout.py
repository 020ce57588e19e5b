"""The ordered rolling update (pure): standbys first, then a switchover, then the former active.

The StatefulSet uses updateStrategy OnDelete, so nothing restarts until the operator deletes
a member. One step at a time, and only while the cluster is healthy (every member present,
reporting, and exactly one active): the service gap of an update is one measured
switchover, never a restart of the active.
"""

from __future__ import annotations

from dataclasses import dataclass

from hastack_operator.resources.status import Member

REVISION_LABEL = "controller-revision-hash"


@dataclass(frozen=True)
class Step:
    action: str  # "none" | "wait" | "delete" | "switchover"
    member: str = ""
    reason: str = ""


def plan(update_revision: str, revisions: dict[str, str], members: list[Member], expected: list[str],
         switchover_pending: str | None) -> Step:
    """``revisions``: member pod name -> its controller-revision-hash."""
    if not update_revision:
        return Step("none", reason="the StatefulSet has no update revision yet")
    outdated = [m for m in expected if revisions.get(m) not in (None, update_revision)]
    if not outdated:
        return Step("none", reason="every member runs the current revision")
    by_name = {m.name: m for m in members}
    missing = [n for n in expected if n not in by_name or by_name[n].phase != "Running"]
    if missing:
        return Step("wait", reason=f"waiting for members to run: {', '.join(missing)}")
    silent = [n for n in expected if by_name[n].report is None]
    if silent:
        return Step("wait", reason=f"waiting for members to report: {', '.join(silent)}")
    roles = {n: (by_name[n].report or {}).get("role") for n in expected}
    actives = [n for n, r in roles.items() if r == "active"]
    if len(actives) != 1 or any(r not in ("active", "standby") for r in roles.values()):
        return Step("wait", reason=f"waiting for one active and standbys (roles: {roles})")
    if switchover_pending:
        return Step("wait", reason=f"switchover to {switchover_pending} in progress")
    active = actives[0]
    standbys = [n for n in outdated if n != active]
    if standbys:
        return Step("delete", standbys[0], f"update standby {standbys[0]} first")
    target = next((n for n in expected if n != active and revisions.get(n) == update_revision), None)
    if target is None:
        return Step("wait", reason="no updated standby to switch over to")
    return Step("switchover", target, f"move the active from {active} to updated {target}, then update {active}")
