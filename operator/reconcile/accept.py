"""The level-triggered reconcile every kind shares for now: accept the object, report it.

Real reconciliation of each kind (children, status aggregation) lands in its own module;
this step stays first in each kind's chain: an object whose spec we cannot parse is
reported with ``Accepted=False`` and never acted upon.
"""

from __future__ import annotations

from typing import Any

from hastack_operator.resources.conditions import Conditions


def accepted_status(generation: int, old_status: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The status patch that records whether the spec at ``generation`` was accepted."""
    conds = Conditions(generation, list(old_status.get("conditions") or []))
    if problems:
        conds.error("Accepted", "InvalidSpec", "; ".join(problems))
    else:
        conds.success("Accepted", "SpecAccepted", "the spec is valid and reconciled by hastack")
    return {"observedGeneration": generation, "conditions": conds.to_list()}


def status_changed(old_status: dict[str, Any], new_status: dict[str, Any]) -> bool:
    return any(old_status.get(k) != v for k, v in new_status.items())
