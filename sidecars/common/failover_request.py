"""The ``failover`` request mon sends to heartbeat (contract between the two sidecars).

mon's ``failover`` receiver calls ``/run/hastack/heartbeat.sock`` with
``{"cmd": "failover", "args": FailoverRequest}`` (JSON lines, ``hastack_common.ctlsock``).
heartbeat replies ``{"ok": true, "result": FailoverReply}`` once it has accepted the request
(the move itself is reported by heartbeat's own events and status), or ``{"ok": false,
"error": "..."}`` when it refuses (e.g. this member is not the active one, or no standby is
fit to take over). A refused request is not retried by mon; an unreachable socket is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

FAILOVER_CMD = "failover"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel, frozen=True)


class FailoverRequest(_Wire):
    ha_cluster: str  # the HACluster whose resource group should move
    reason: str  # the alert's reason, e.g. "alert: 3 consecutive failures (after=3)"
    monitor: str  # "<namespace>/<ServiceMonitor name>"
    probe: str  # the failing probe's name
    detail: str = ""  # the last probe result, e.g. "HTTP 503 from http://127.0.0.1:8080/"
    requested_at: str  # RFC 3339 UTC time of the alert


class FailoverReply(_Wire):
    accepted: bool
    action: Literal["failover", "none"] = "failover"  # "none": e.g. no fit standby, nothing moves
    detail: str = ""
