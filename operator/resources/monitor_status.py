"""ServiceMonitor status from the mon that runs it (pure).

mon never writes custom-resource status: it publishes a JSON report in its own pod's
annotation ``hastack.io/monitor-status`` — ``{"publishedAt": ..., "monitors": {"ns/name":
{"probes": [...]}}}``, ``probes`` in the CRD's ``status.probes[]`` shape — and the operator
copies the part of the mon that decides (the active member's, or the standalone one's).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hastack_common import consts
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.status import STALE_AFTER, parse_time

ANNOTATION_MONITOR_STATUS = f"{consts.GROUP}/monitor-status"


def report_of(pod: dict[str, Any] | None, key: str, now: dt.datetime) -> tuple[dict[str, Any] | None, str]:
    """The monitor's part of the pod's report, or None with the reason."""
    if pod is None:
        return None, "no mon pod"
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_MONITOR_STATUS)
    if not raw:
        return None, f"{pod['metadata']['name']} has not reported yet"
    try:
        report = json.loads(raw)
    except ValueError:
        return None, f"{pod['metadata']['name']} published an unreadable report"
    at = parse_time(str(report.get("publishedAt") or ""))
    if at is None or now - at > STALE_AFTER:
        return None, f"{pod['metadata']['name']} stopped reporting (last {report.get('publishedAt')})"
    part = (report.get("monitors") or {}).get(key)
    if part is None:
        return None, f"{pod['metadata']['name']} does not run this monitor yet"
    return dict(part), ""


def status(generation: int, old: dict[str, Any], part: dict[str, Any] | None, why: str,
           now: dt.datetime) -> dict[str, Any]:
    conds = Conditions(generation, list(old.get("conditions") or []), now=now)
    if part is None:
        conds.unknown("Ready", "NotReporting", why)
        return {"observedGeneration": generation, "conditions": conds.to_list()}
    probes = list(part.get("probes") or [])
    up = [p for p in probes if str(p.get("lastResult", "")).startswith("success")]
    alerting = [p for p in probes if p.get("alert") == "alerting"]
    if alerting:
        conds.error("Ready", "Alerting", "alerting: " + ", ".join(p.get("name", "?") for p in alerting))
    else:
        conds.success("Ready", "Probing", f"{len(up)}/{len(probes)} probes up")
    return {"observedGeneration": generation, "probes": probes, "summary": f"{len(up)}/{len(probes)} up",
            "alerting": len(alerting), "conditions": conds.to_list()}
