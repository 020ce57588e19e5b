"""Recording a disconnected peer Outdated on the HACluster's Lease (contract: blockrepl -> heartbeat).

DESIGN "Outdating a disconnected peer": when replication to a peer drops, the Primary's blockrepl
runs its fence-peer handler and holds every further write until it succeeds. In a cluster that
handler is ``hastack ctl heartbeat outdate-peer`` (:data:`FENCE_PEER_COMMAND`): it sends
``{"cmd": "outdate-peer", "args": OutdatePeerRequest}`` to the member's heartbeat socket, taking
the peer from the environment blockrepl sets (``HASTACK_PEER_NODE_ID``, ``HASTACK_PEER_NAME``,
``HASTACK_RESOURCE``). heartbeat, while it holds the Lease, writes the annotation
``outdated.hastack.io/<member>`` on the Lease -- a merge patch conditional on the Lease's
resourceVersion, so it lands only while the record still names this member as holder -- and
replies. ``hastack ctl`` then exits 4 (DRBD's "peer Outdated"), and blockrepl releases the writes;
any refusal exits 1 and blockrepl retries.

A blockrepl node id is its member's ordinal (the operator renders ``nodeId: i`` for member
``i``), so the peer is named by node id; the name is a cross-check.

A standby whose member is recorded Outdated neither acquires the Lease nor calls itself eligible,
so "the primary writes alone, then dies" cannot promote stale data: its acquire is conditional on
the resourceVersion it read, and the record was written before the first write it did not get.
The holder removes the record once that peer is connected, UpToDate and has nothing out of sync.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from hastack_common.consts import GROUP

OUTDATE_PEER_CMD = "outdate-peer"
FENCE_PEER_COMMAND = ["hastack", "ctl", "heartbeat", OUTDATE_PEER_CMD]
ANNOTATION_PREFIX = f"outdated.{GROUP}/"
EXIT_PEER_OUTDATED = 4  # DRBD's fence-peer exit code "peer is Outdated"
EXIT_REFUSED = 1


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel, frozen=True)


class OutdatePeerRequest(_Wire):
    peer_node_id: int  # blockrepl node id of the lost peer == its member's ordinal
    peer_name: str = ""  # blockrepl's name for it (a cross-check)
    resource: str = ""  # blockrepl's resource, for the record


class OutdatedRecord(_Wire):
    """The annotation's value."""

    by: str  # the holder that recorded it
    at: str  # RFC 3339 UTC
    resource: str = ""


class OutdatePeerReply(_Wire):
    member: str
    recorded: OutdatedRecord


def annotation_key(member: str) -> str:
    return ANNOTATION_PREFIX + member


def record_value(by: str, resource: str, now: dt.datetime) -> str:
    """A fresh value each time (its time), so writing it always changes the Lease's resourceVersion."""
    at = now.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    rec = OutdatedRecord(by=by, at=at, resource=resource)
    return json.dumps(rec.model_dump(by_alias=True), sort_keys=True, separators=(",", ":"))


def outdated_members(annotations: Mapping[str, str] | None) -> dict[str, OutdatedRecord]:
    """Every member recorded Outdated in a Lease's annotations. A value that does not parse still
    counts (as recorded by "unknown"): a damaged record must never unblock a stale replica."""
    found: dict[str, OutdatedRecord] = {}
    for key, value in (annotations or {}).items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        try:
            found[key[len(ANNOTATION_PREFIX):]] = OutdatedRecord.model_validate_json(value)
        except ValidationError:
            found[key[len(ANNOTATION_PREFIX):]] = OutdatedRecord(by="unknown", at="", resource=value[:100])
    return found


def request_from_env(env: Mapping[str, str]) -> OutdatePeerRequest:
    """What blockrepl's fence-peer handler environment says (``hastack_blockrepl.fence``)."""
    node_id = env.get("HASTACK_PEER_NODE_ID", "")
    if not node_id.isdigit():
        raise ValueError("HASTACK_PEER_NODE_ID is not set: outdate-peer is blockrepl's fence-peer handler; "
                         "by hand, give peerNodeId=<n>")
    return OutdatePeerRequest(peer_node_id=int(node_id), peer_name=env.get("HASTACK_PEER_NAME", ""),
                              resource=env.get("HASTACK_RESOURCE", ""))
