"""Commands on ``/run/hastack/heartbeat.sock``: status, switchover, failover (mon's request),
outdate-peer (blockrepl's fence-peer handler, ``hastack_common.outdate_peer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hastack_common.ctlsock import CommandError, Handler
from hastack_common.failover_request import FAILOVER_CMD, FailoverReply, FailoverRequest
from hastack_common.outdate_peer import OUTDATE_PEER_CMD, OutdatePeerRequest
from hastack_heartbeat import membership as m
from hastack_heartbeat.events import FailoverRequest as FailoverEvent
from hastack_heartbeat.events import Switchover

if TYPE_CHECKING:
    from hastack_heartbeat.node import Node


def handlers(node: Node) -> dict[str, Handler]:
    async def status(args: dict[str, Any]) -> Any:
        return node.status()

    def _require_active(what: str) -> None:
        st = node.state
        if st.role not in m.HOLDING:
            holder = st.lease.holder if st.lease else ""
            where = f"; the active member is {holder}" if holder and holder != node.me else ""
            raise CommandError(f"refusing {what}: {node.me} is {st.role.value}, not active{where}")

    def _fit_standbys() -> list[str]:
        return [p.name for p in node.state.peers.values() if p.state is m.PeerState.ALIVE and p.eligible]

    async def switchover(args: dict[str, Any]) -> Any:
        target = args.get("target")
        if target is not None and target not in node.cfg.members:
            raise CommandError(f"unknown member {target!r}; members are {node.cfg.members}")
        _require_active("switchover")
        if target is not None and target not in _fit_standbys():
            raise CommandError(f"refusing switchover: {target} is not alive and eligible "
                               f"(fit standbys: {', '.join(_fit_standbys()) or 'none'})")
        node.feed(Switchover(target, str(args.get("reason", "requested"))))
        return {"from": node.me, "to": target, "role": node.state.role.value}

    async def failover(args: dict[str, Any]) -> Any:
        try:
            req = FailoverRequest.model_validate(args)
        except ValidationError as exc:
            raise CommandError(f"bad failover request: {exc}") from exc
        if req.ha_cluster != node.cfg.cluster:
            raise CommandError(f"this heartbeat serves HACluster {node.cfg.cluster}, not {req.ha_cluster}")
        _require_active("failover")
        if not _fit_standbys():
            raise CommandError("refusing failover: no standby is alive and eligible; the resource group "
                               "stays where it is")
        last, limit = node.state.last_request, node.state.params.request_min_interval
        now = node.clock()
        if last is not None and now - last < limit:
            raise CommandError(f"refusing failover: the last one was honoured {now - last:.0f}s ago "
                               f"(at most one per {limit:.0f}s)")
        node.feed(FailoverEvent(f"{req.monitor} probe {req.probe}: {req.reason}"))
        return FailoverReply(accepted=True, detail=f"{node.me} demoting").model_dump(by_alias=True)

    async def outdate_peer(args: dict[str, Any]) -> Any:
        try:
            req = OutdatePeerRequest.model_validate(args)
        except ValidationError as exc:
            raise CommandError(f"bad outdate-peer request: {exc}") from exc
        return await node.outdated.record(req)

    return {"status": status, "switchover": switchover, FAILOVER_CMD: failover, OUTDATE_PEER_CMD: outdate_peer}
