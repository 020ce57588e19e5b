"""The holder's side of "Outdating a disconnected peer" (``hastack_common.outdate_peer``).

:meth:`OutdatedRecords.record` answers blockrepl's fence-peer handler: while this member holds
the Lease, it writes ``outdated.hastack.io/<peer>`` (conditional on the version it read and on
still being holder) and only then replies, so blockrepl acknowledges no write the peer lacks
before the record exists. :meth:`OutdatedRecords.clear_resynced` removes a record once blockrepl
reports that peer Connected, Established, UpToDate and with nothing out of sync.

Both run under one lock: a removal reads blockrepl's status and writes inside it, so a link that
drops meanwhile has its fence-peer request wait for the removal and then record the peer again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Protocol

from hastack_common.ctlsock import CommandError
from hastack_common.logs import kv
from hastack_common.outdate_peer import (
    OutdatedRecord,
    OutdatePeerReply,
    OutdatePeerRequest,
    annotation_key,
    record_value,
)
from hastack_heartbeat import membership as m
from hastack_heartbeat.arbitration import LeaseRecord
from hastack_heartbeat.events import LeaseObserved

log = logging.getLogger(__name__)


class Annotator(Protocol):
    async def annotate(self, me: str, key: str, value: str | None,
                       timeout: float) -> tuple[str, LeaseRecord | None]: ...


def peer_in_sync(peer: dict[str, Any]) -> bool:
    """blockrepl's status of one peer says it holds everything the Primary has."""
    return (peer.get("connection") == "Connected" and peer.get("replication") == "Established"
            and peer.get("peer_disk") == "UpToDate" and peer.get("out_of_sync_bytes") == 0)


def holds_lease(st: m.State) -> bool:
    """Active, promoting, or demoting voluntarily (still renewing: the unmount's writes must flow
    when the peer goes away at the same time, as when the whole HACluster is deleted). The write
    itself is conditional on the Lease naming this member."""
    return st.role in m.HOLDING or (st.role is m.Role.DEMOTING and st.demote_keeps_right)


class OutdatedRecords:
    def __init__(self, node: Any, lease: Annotator, members: list[str], timeout: float) -> None:
        self.node, self.lease, self.members, self.timeout = node, lease, members, timeout
        self._lock = asyncio.Lock()

    def member_of(self, req: OutdatePeerRequest) -> str:
        if not 0 <= req.peer_node_id < len(self.members):
            raise CommandError(f"no member has blockrepl node id {req.peer_node_id} "
                               f"(members: {', '.join(self.members)})")
        member = self.members[req.peer_node_id]
        if req.peer_name and req.peer_name != member:
            raise CommandError(f"blockrepl node id {req.peer_node_id} is {req.peer_name!r} but member "
                               f"{req.peer_node_id} is {member!r}: blockrepl's node ids must be the "
                               "members' ordinals")
        if member == self.node.me:
            raise CommandError(f"refusing to record {member} Outdated: it is this member")
        return member

    async def record(self, req: OutdatePeerRequest) -> dict[str, Any]:
        member = self.member_of(req)
        async with self._lock:
            st = self.node.state
            if not holds_lease(st):
                raise CommandError(f"refusing to record {member} Outdated: {self.node.me} is {st.role.value} "
                                   "and does not hold the Lease (the Primary keeps its writes held until it demotes)")
            value = record_value(self.node.me, req.resource, dt.datetime.now(dt.UTC))
            outcome, rec = await self.lease.annotate(self.node.me, annotation_key(member), value, self.timeout)
            if outcome == "notholder":
                raise CommandError(f"refusing to record {member} Outdated: the Lease is held by "
                                   f"{rec.holder if rec else 'nobody'}, not {self.node.me}")
            if outcome != "ok" or rec is None:
                raise CommandError(f"could not record {member} Outdated: API server unreachable; "
                                   "writes stay held, blockrepl retries")
            self.node.feed(LeaseObserved(rec))
        log.warning("peer recorded Outdated on the Lease", extra=kv(peer=member, resource=req.resource))
        self.node.emit("Warning", "PeerOutdated", f"{self.node.me} recorded {member} Outdated on the Lease: "
                  f"replication to it dropped ({req.resource or 'volume'}); {member} may not be "
                  "promoted until it has resynced")
        reply = OutdatePeerReply(member=member, recorded=OutdatedRecord.model_validate_json(value))
        return reply.model_dump(by_alias=True)

    async def clear_resynced(self, replica: Any) -> None:
        """On the holder: drop the record of every peer blockrepl reports in sync again."""
        lease = self.node.state.lease
        if lease is None or not (set(lease.outdated) - {self.node.me}) or replica is None:
            return
        async with self._lock:
            status = await replica.status()
            if status.get("role") != "Primary" or status.get("disk") != "UpToDate":
                return
            for peer in status.get("peers", []):
                node_id = peer.get("node_id")
                if not isinstance(node_id, int) or not 0 <= node_id < len(self.members):
                    continue
                member = self.members[node_id]
                if member == self.node.me or member not in self.node.state.lease.outdated:
                    continue
                if not peer_in_sync(peer) or self.node.state.role is not m.Role.ACTIVE:
                    continue
                outcome, rec = await self.lease.annotate(self.node.me, annotation_key(member), None, self.timeout)
                if outcome == "ok" and rec is not None:
                    self.node.feed(LeaseObserved(rec))
                    log.info("Outdated record removed: peer resynced", extra=kv(peer=member))
                    self.node.emit("Normal", "PeerResynced", f"{member} is UpToDate again; its Outdated record "
                              "on the Lease is removed")
