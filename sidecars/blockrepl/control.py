"""Admin commands on the control socket (DESIGN "Local control"), refused with a reason when unsafe."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hastack_blockrepl.disk import AttachError
from hastack_blockrepl.engine import PRIMARY, SECONDARY, Engine
from hastack_blockrepl.meta import CONSISTENT, DAY0, DISKLESS, INCONSISTENT, OUTDATED, UP_TO_DATE
from hastack_blockrepl.nbd import NbdServer
from hastack_blockrepl.nbdproto import ESHUTDOWN
from hastack_blockrepl.peer import PeerLink
from hastack_blockrepl.peerconn import Replication
from hastack_blockrepl.verify import start_verify
from hastack_common.ctlsock import CommandError, Handler
from hastack_common.logs import kv

log = logging.getLogger(__name__)
DRAIN_TIMEOUT = 10.0


class Control:
    def __init__(self, engine: Engine, repl: Replication, nbd: NbdServer) -> None:
        self.e, self.repl, self.nbd = engine, repl, nbd

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "primary": self.primary,
            "secondary": self.secondary,
            "connect": self.connect,
            "disconnect": self.disconnect,
            "deadline": self.deadline,
            "outdate": self.outdate,
            "verify": self.verify,
            "invalidate": self.invalidate,
            "metrics": self.metrics,
            "resize": self.resize,
            "detach": self.detach,
            "attach": self.attach,
        }

    def _links(self, args: dict[str, Any]) -> list[PeerLink]:
        peer = args.get("peer")
        if peer is None:
            return list(self.repl.links.values())
        link = self.repl.links.get(int(peer))
        if link is None:
            raise CommandError(f"no peer with node id {peer}; peers: {sorted(self.repl.links)}")
        return [link]

    async def status(self, args: dict[str, Any]) -> Any:
        return self.e.status()

    async def metrics(self, args: dict[str, Any]) -> Any:
        from prometheus_client import generate_latest

        self.e.status()
        return generate_latest(self.e.m.registry).decode()

    async def primary(self, args: dict[str, Any]) -> Any:
        e, force = self.e, bool(args.get("force"))
        if e.role == PRIMARY:
            return e.status()
        for link in self.repl.links.values():
            if link.peer_role == PRIMARY and not e.cfg.net.allow_two_primaries:
                raise CommandError(
                    f"refusing to become Primary: node {link.node_id} ({link.name}) is Primary; demote it first"
                )
            if link.repl == "SyncTarget":
                raise CommandError(
                    f"refusing to become Primary: resync from node {link.node_id} in progress "
                    f"({link.progress.status()['percent'] if link.progress else 0}% done)"
                )
        disk = e.sb.disk_state
        if disk == DISKLESS:
            raise CommandError("refusing to become Primary: no local disk (Diskless); attach it first")
        if disk != UP_TO_DATE:
            if not force:
                why = f"local disk is {disk}"
                if disk == CONSISTENT:
                    why += (" (its node restarted: a peer that stayed up may hold acknowledged writes it "
                            "lacks; connecting to any peer decides)")
                raise CommandError(
                    f"refusing to become Primary: {why}; use --force to override (acknowledged writes may be lost)"
                )
            e.sb.disk_state = UP_TO_DATE
        e.role = PRIMARY
        e.sb.primary, e.sb.primary_since = True, time.time()
        e.need_rotate = True  # a new data generation starts with the first write (day 0 stays day 0 until then)
        await e.persist()
        if e.cfg.fencing == "resource-only" and e.fence is not None:
            for link in self.repl.links.values():
                if not link.replicating:
                    e.hold(
                        f"fence:{link.node_id}",
                        f"fencing node {link.node_id} (not connected at promotion)",
                        acks=True,
                    )
                    e.fence(link.node_id)
        e.announce()
        e.m.update(e)
        e.events.publish("role", role=PRIMARY, forced=force)
        return e.status()

    async def secondary(self, args: dict[str, Any]) -> Any:
        e, force = self.e, bool(args.get("force"))
        if e.role != PRIMARY:
            return e.status()
        if e.nbd_clients and not force:
            raise CommandError(
                f"refusing to become Secondary: {e.nbd_clients} NBD client(s) connected "
                "(unexpose the device first, or use --force to disconnect them)"
            )
        self.nbd.disconnect_all()
        held = e.gate.held_submits
        e.gate.held_submits = []
        for _, done in held:  # never applied: the client sees a failed request
            done(ESHUTDOWN)
        if not await e.wait_idle(DRAIN_TIMEOUT):
            e.counters["drain_timeouts"] += 1
            log.warning("demoting with writes still in flight: they fail", extra=kv(in_flight=e.in_flight()))
        e.gate.fail_all(ESHUTDOWN)  # applied but never acknowledged: a failed request, nothing lost
        e.role = SECONDARY
        e.sb.primary = False
        await e.persist()
        e.announce()
        for pid in self.repl.links:
            e.release(f"fence:{pid}")
        e.m.update(e)
        e.events.publish("role", role=SECONDARY)
        return e.status()

    async def connect(self, args: dict[str, Any]) -> Any:
        for link in self._links(args):
            link.reconnect(discard_my_data=bool(args.get("discard_my_data")))
        return self.e.status()

    async def disconnect(self, args: dict[str, Any]) -> Any:
        for link in self._links(args):
            link.standalone("disconnected by the administrator")
        return self.e.status()

    async def deadline(self, args: dict[str, Any]) -> Any:
        try:
            seconds = float(args["seconds"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CommandError('deadline needs {"seconds": <number>} (0 disarms)') from exc
        return self.e.gate.set_deadline(seconds)

    async def outdate(self, args: dict[str, Any]) -> Any:
        e = self.e
        if e.role == PRIMARY:
            raise CommandError("refusing to outdate: this replica is Primary")
        for link in self.repl.links.values():
            if link.replicating and link.peer_role == PRIMARY:
                raise CommandError(
                    f"refusing to outdate: connected to Primary node {link.node_id}, which keeps "
                    "this replica up to date"
                )
        if e.sb.disk_state == UP_TO_DATE:
            e.sb.disk_state = OUTDATED
            await e.persist()
            e.m.update(e)
            e.events.publish("disk", disk=OUTDATED)
        return {"disk": e.sb.disk_state}

    async def invalidate(self, args: dict[str, Any]) -> Any:
        e = self.e
        if e.role == PRIMARY:
            raise CommandError("refusing to invalidate the Primary's disk; demote it first")
        if not any(lk.peer_disk == UP_TO_DATE or lk.conn != "StandAlone" for lk in self.repl.links.values()):
            raise CommandError("refusing to invalidate: no peer to resync from")
        e.sb.disk_state, e.sb.current = INCONSISTENT, DAY0
        await e.persist()
        for link in self.repl.links.values():
            if link.proto is not None:
                link.proto.abort("invalidated: reconnecting for a full resync")
        e.events.publish("disk", disk=INCONSISTENT, reason="invalidate")
        return e.status()

    async def verify(self, args: dict[str, Any]) -> Any:
        started = []
        for link in self._links(args):
            if not link.replicating:
                if args.get("peer") is not None:
                    raise CommandError(f"cannot verify against node {link.node_id}: not connected ({link.conn})")
                continue
            start_verify(self.e, link)
            started.append(link.node_id)
        if not started:
            raise CommandError("no connected peer to verify against")
        return {"verifying": started}

    async def resize(self, args: dict[str, Any]) -> Any:
        """Grow the volume. On the Primary every connected peer grows first; a disconnected
        Secondary may be grown alone (it reconnects once its size matches)."""
        e = self.e
        size = args.get("size")
        want = int(size) if size is not None else None
        peers = [lk for lk in self.repl.links.values() if lk.proto is not None]
        if e.role != PRIMARY and any(lk.peer_role == PRIMARY for lk in peers):
            raise CommandError("refusing to resize a Secondary connected to its Primary: run resize on the Primary")
        for lk in peers:
            if lk.repl not in ("Established",):
                raise CommandError(f"refusing to resize while node {lk.node_id} is {lk.repl}: wait for it")
        if want is None:  # the largest size every replica can hold: ask the local disk first
            want = await asyncio.to_thread(room_for, e)
        for lk in peers:
            got = await lk.request_resize(want, 120.0)
            if not got.get("ok"):
                raise CommandError(f"node {lk.node_id} cannot grow to {want} bytes: {got.get('error')}")
        try:
            size_now = await e.grow(want)
        except (OSError, AttachError) as exc:
            raise CommandError(f"cannot grow to {want} bytes: {exc}") from exc
        return {"size": size_now}

    async def detach(self, args: dict[str, Any]) -> Any:
        """Stop using the local disk (Diskless); a Primary keeps serving through UpToDate peers."""
        e = self.e
        if e.diskless():
            return e.status()
        if e.role == PRIMARY and not e.uptodate_peers():
            raise CommandError("refusing to detach the Primary's disk: no UpToDate peer would hold the data")
        e.sb.disk_state = DISKLESS
        e.events.publish("disk", disk=DISKLESS, reason="detached by the administrator")
        e.m.update(e)
        e.announce()
        await e.persist()
        return e.status()

    async def attach(self, args: dict[str, Any]) -> Any:
        """Use the local disk again: it rejoins Inconsistent and gets a full (checksum) resync."""
        e = self.e
        if not e.diskless():
            return e.status()
        if e.role == PRIMARY:
            raise CommandError("refusing to attach under a Primary: demote it first (it would have to resync)")
        e.sb.disk_state, e.sb.current = INCONSISTENT, DAY0
        await e.persist()
        for link in self.repl.links.values():
            if link.proto is not None:
                link.proto.abort("disk attached: reconnecting to resync")
        e.m.update(e)
        e.events.publish("disk", disk=INCONSISTENT, reason="attached")
        return e.status()


def room_for(e: Engine) -> int:
    from hastack_blockrepl.disk import device_size, internal_layout

    total = device_size(e.backing.fd)
    return internal_layout(total)[1] if e.backing.md_fd == e.backing.fd else total // 4096 * 4096
