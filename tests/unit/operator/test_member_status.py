"""Member status aggregation (pure): truthful, stale reports unknown, and why nobody is active."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hastack_common import consts
from hastack_operator.resources.status import cluster_status, member_from_pod

NOW = dt.datetime(2026, 11, 25, 2, 0, 0, tzinfo=dt.UTC)


def pod(name: str, report: dict[str, Any] | None, age: float = 1.0) -> dict[str, Any]:
    ann = {}
    if report is not None:
        at = (NOW - dt.timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
        ann[consts.ANNOTATION_MEMBER_STATUS] = json.dumps({**report, "publishedAt": at})
    return {"metadata": {"name": name, "annotations": ann}, "spec": {"nodeName": "n"}, "status": {"phase": "Running"}}


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_no_active_member_says_why_each_standby_is_blocked() -> None:
    members = [member_from_pod(pod("web-0", None), NOW),
               member_from_pod(pod("web-1", {"role": "standby", "peers": {"web-0": {"state": "dead"}},
                                              "blocked": "recorded Outdated on the Lease by web-0: it may be "
                                                         "promoted only after a resync"}), NOW)]
    st = cluster_status(1, {}, members, ["web-0", "web-1"], NOW)
    ready = cond(st, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "NoActiveMember"
    assert "web-1: recorded Outdated on the Lease by web-0" in ready["message"]
    assert [m["state"] for m in st["members"]] == ["unknown", "alive"]


def test_a_stale_report_is_unknown_never_fine() -> None:
    members = [member_from_pod(pod("web-0", {"role": "active", "peers": {}}, age=120), NOW)]
    st = cluster_status(1, {}, members, ["web-0"], NOW)
    assert st["members"][0]["state"] == "unknown" and st["activeMember"] == ""
