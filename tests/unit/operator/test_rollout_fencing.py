"""The rolling-update order and the lost-node fencing plan, as tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hastack_operator.resources import fencing, rollout
from hastack_operator.resources.status import Member

EXPECTED = ["web-0", "web-1", "web-2"]


def members(roles: dict[str, str | None], phase: str = "Running") -> list[Member]:
    return [Member(n, f"node-{n[-1]}", phase, r == "active", None if r is None else {"role": r})
            for n, r in roles.items()]


ROLES = {"web-0": "active", "web-1": "standby", "web-2": "standby"}


@pytest.mark.parametrize(("revisions", "roles", "pending", "expected"), [
    ({"web-0": "new", "web-1": "new", "web-2": "new"}, ROLES, None, ("none", "")),
    ({"web-0": "old", "web-1": "old", "web-2": "old"}, ROLES, None, ("delete", "web-1")),
    ({"web-0": "old", "web-1": "new", "web-2": "old"}, ROLES, None, ("delete", "web-2")),
    ({"web-0": "old", "web-1": "new", "web-2": "new"}, ROLES, None, ("switchover", "web-1")),
    ({"web-0": "old", "web-1": "new", "web-2": "new"}, ROLES, "web-1", ("wait", "")),
    ({"web-0": "old", "web-1": "new", "web-2": "new"},
     {"web-0": "standby", "web-1": "active", "web-2": "standby"}, None, ("delete", "web-0")),
    # never while unhealthy: a member silent, none or two active, a member missing
    ({"web-0": "old", "web-1": "old", "web-2": "old"}, {**ROLES, "web-2": None}, None, ("wait", "")),
    ({"web-0": "old", "web-1": "old", "web-2": "old"}, {**ROLES, "web-0": "standby"}, None, ("wait", "")),
    ({"web-0": "old", "web-1": "old", "web-2": "old"}, {**ROLES, "web-1": "active"}, None, ("wait", "")),
    ({"web-0": "old", "web-1": "old", "web-2": "old"}, {"web-0": "active", "web-1": "standby"}, None,
     ("wait", "")),
])
def test_rollout_order(revisions: dict[str, str], roles: dict[str, Any], pending: str | None,
                       expected: tuple[str, str]) -> None:
    step = rollout.plan("new", revisions, members(roles), EXPECTED, pending)
    assert (step.action, step.member) == expected, step.reason


def test_the_active_is_never_deleted_before_a_switchover() -> None:
    """Walk a whole update of every possible starting state: the active is only ever deleted
    once it has become a standby."""
    roles = dict(ROLES)
    revisions = dict.fromkeys(EXPECTED, "old")
    deleted = []
    for _ in range(10):
        step = rollout.plan("new", revisions, members(roles), EXPECTED, None)
        if step.action == "delete":
            assert roles[step.member] != "active"
            deleted.append(step.member)
            revisions[step.member] = "new"
        elif step.action == "switchover":
            old = next(n for n, r in roles.items() if r == "active")
            roles[old], roles[step.member] = "standby", "active"
        else:
            break
    assert deleted == ["web-1", "web-2", "web-0"]
    assert set(revisions.values()) == {"new"}


NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def health(ready: bool, ago: float, tainted: bool = False) -> fencing.NodeHealth:
    return fencing.NodeHealth("n1", ready, NOW - dt.timedelta(seconds=ago), tainted)


@pytest.mark.parametrize(("node", "policy", "expected"), [
    (health(True, 3600), "OutOfService", []),
    (health(False, 30), "OutOfService", []),
    (health(False, 61), "OutOfService", ["taint", "force-delete"]),
    (health(False, 61, tainted=True), "OutOfService", ["force-delete"]),
    (health(False, 901), "OutOfService", ["taint", "force-delete", "replace"]),
    (health(False, 901), "None", []),
])
def test_fencing_plan(node: fencing.NodeHealth, policy: str, expected: list[str]) -> None:
    actions = fencing.plan(policy, 60, 900, {"web-0": "n1"}, {"n1": node}, {"backing-web-0"}, NOW)
    assert [a.kind for a in actions] == expected


def test_replace_never_when_disabled_or_claim_gone() -> None:
    node = {"n1": health(False, 5000)}
    assert "replace" not in [a.kind for a in fencing.plan("OutOfService", 60, 0, {"web-0": "n1"}, node,
                                                         {"backing-web-0"}, NOW)]
    assert "replace" not in [a.kind for a in fencing.plan("OutOfService", 60, 900, {"web-0": "n1"}, node,
                                                         set(), NOW)]
