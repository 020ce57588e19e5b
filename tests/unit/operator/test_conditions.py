from __future__ import annotations

import datetime as dt

from hastack_operator.reconcile.status_patch import status_changed
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.validation import spec_problems

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_transition_time_moves_only_on_status_change() -> None:
    first = Conditions(1, now=T0).success("Ready", "Up").to_list()
    same = Conditions(2, first, now=T1).success("Ready", "StillUp", "x").to_list()
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2 and same[0]["reason"] == "StillUp"
    flipped = Conditions(2, first, now=T1).error("Ready", "Down").to_list()
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_unobserved_conditions_are_kept() -> None:
    first = Conditions(1, now=T0).success("Ready", "Up").success("Accepted", "Ok").to_list()
    again = Conditions(1, first, now=T1).error("Ready", "Down").to_list()
    assert [c["type"] for c in again] == ["Ready", "Accepted"]


def accepted(generation: int, old: dict[str, object], problems: list[str]) -> dict[str, object]:
    conds = Conditions(generation, list(old.get("conditions") or []), now=T0)  # type: ignore[call-overload]
    if problems:
        conds.error("Accepted", "InvalidSpec", "; ".join(problems))
    else:
        conds.success("Accepted", "SpecAccepted")
    return {"observedGeneration": generation, "conditions": conds.to_list()}


def test_status_is_written_only_when_it_changes() -> None:
    status = accepted(3, {}, [])
    assert status["observedGeneration"] == 3
    assert status["conditions"][0]["status"] == "True"  # type: ignore[index]
    assert not status_changed(status, accepted(3, status, []))
    assert status_changed(status, accepted(4, status, []))


def test_refused_spec_is_reported() -> None:
    problems = spec_problems("haclusters", {"replicas": 2, "failover": {"preferredMember": 2}}, "x")
    assert problems and "preferredMember 2" in problems[0]
    status = accepted(1, {}, problems)
    assert status["conditions"][0]["status"] == "False"  # type: ignore[index]
    assert spec_problems("servicemonitors", {"alert": {"dependsOn": ["me"]}}, "me")
    assert spec_problems("servicemonitors", {"alert": {"dependsOn": ["other"]}}, "me") == []
