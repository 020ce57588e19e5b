"""The replication link to one peer: connect/accept, authenticate, decide sync, replicate, resync.

Connection states (DRBD's words): StandAlone (not trying: admin disconnect, split brain,
unrelated data), Connecting, Connected. Replication states: Off, Established, SyncSource,
SyncTarget. The replica with the higher node id dials; both accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
from collections import deque
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from hastack_blockrepl import disk, fastpath, resync
from hastack_blockrepl import wire as W
from hastack_blockrepl.actlog import extents
from hastack_blockrepl.bitmap import Bitmap
from hastack_blockrepl.engine import PRIMARY
from hastack_blockrepl.meta import CONSISTENT, DISKLESS, INCONSISTENT, OUTDATED, UP_TO_DATE
from hastack_blockrepl.resync import WINDOW, Progress, digest, sync_set
from hastack_blockrepl.syncdecide import DISCONNECT, NONE, SOURCE, TARGET, Decision, Policy, Side, decide_sync
from hastack_common.config_blockrepl import AL_EXTENT
from hastack_common.logs import kv

if TYPE_CHECKING:
    from hastack_blockrepl.peerconn import LinkProtocol, Replication

log = logging.getLogger(__name__)
U64 = struct.Struct(">Q")
BITMAP_CHUNK = 1 << 20
SERVE_BUDGET = 0.002  # seconds a Secondary's serve may keep the event loop waiting at most
SERVE_FRAMES = 256


def serve_slack(loop: asyncio.AbstractEventLoop, budget: float, own: Collection[object] = ()) -> float:
    """How long a serve may keep the event loop waiting now: nothing while callbacks wait to run
    (a spawned ``fdatasync`` for a FLUSH must not wait behind it), else until the loop's next
    timer, at most ``budget``. A transport in ``own`` — one the serve reads itself — that is
    queued to read is not such a callback (one poll of the loop finds the client's and a peer's
    socket readable together). asyncio's selector loop keeps both in fields of its own; a loop
    without them gets the budget."""
    ready = getattr(loop, "_ready", None)
    if ready and any(getattr(getattr(h, "_callback", None), "__self__", None) not in own for h in ready):
        return 0.0
    timers = getattr(loop, "_scheduled", None)
    if timers:
        return max(0.0, min(budget, timers[0].when() - loop.time()))
    return budget


def loop_poll_fd(loop: asyncio.AbstractEventLoop) -> int:
    """The event loop's own poll descriptor, readable when anything else it waits for is ready
    (a selector loop's; -1 on a loop without one: ``SERVE_BUDGET`` alone then bounds a serve)."""
    selector = getattr(loop, "_selector", None)
    return selector.fileno() if selector is not None and hasattr(selector, "fileno") else -1


class PeerLink:
    def __init__(self, node: Replication, node_id: int, name: str, address: str) -> None:
        self.node, self.engine = node, node.engine
        self.node_id, self.name, self.address = node_id, name or f"node-{node_id}", address
        self.proto: LinkProtocol | None = None
        self.conn = "Connecting"
        self.repl = "Off"
        self.peer_role = "Unknown"
        self.peer_disk = "DUnknown"
        self.standalone_reason = ""
        self.split_brain = False
        self.discard_my_data = False
        self.decision: Decision | None = None
        self.peer_state: dict[str, Any] | None = None
        self.sent_state: dict[str, Any] = {}
        self.peer_bitmap = bytearray()
        self.peer_decision: dict[str, Any] | None = None
        self.progress: Progress | None = None
        self.resync_task: asyncio.Task[None] | None = None
        self.last_rx = 0.0
        # gathered while the frames of one read are handled (wire version 3), sent after them
        self.acks: dict[int, list[int]] = {W.ACK_RECV: [], W.ACK_WRITE: []}
        self.wake = asyncio.Event()
        self.rs_window = asyncio.Semaphore(WINDOW)
        self.rs_outstanding = 0
        self.verify: dict[str, Any] = {}
        self.resize_waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # wire version 6. A Primary: the settled id last told to this peer. A Secondary: the
        # writes this Primary sent above its settled id, (id, activity-log extents), oldest first.
        self.settled_sent = 0
        self.unsettled: deque[tuple[int, Iterable[int]]] = deque()
        # connections in a row that ended before replicating (a deferred or refused decision):
        # the dialling side backs off instead of redialling at once
        self.failed_handshakes = 0
        # (lost Primary, extents) marked for this peer since the handshake: resync once it
        # follows that Primary no more (:meth:`maybe_reconcile`)
        self.reconcile: tuple[int, int] | None = None

    # ---- the Link interface used by the engine ----------------------------------------------
    @property
    def replicating(self) -> bool:
        return (
            self.proto is not None
            and self.repl in ("Established", "SyncSource", "SyncTarget")
            and self.peer_disk != DISKLESS
        )

    def _send(self, parts: list[Any]) -> None:
        if self.proto is not None:
            self.proto.send(parts)

    def send_write(self, wid: int, offset: int, data: bytes | memoryview, fua: bool) -> None:
        assert self.proto is not None
        self.send_settled()
        self.proto.send(self.proto.enc.encode(W.WRITE, data, flags=W.F_FUA if fua else 0, id=wid, offset=offset))

    def send_writes(self, wid: int, payload: bytes) -> None:
        """Sent at once: the peer writes the batch while this replica does. From wire version 6
        the frame's offset carries the settled id (no frame of its own)."""
        proto = self.proto
        assert proto is not None
        settled = 0
        if proto.version >= W.VERSION_SETTLED:
            settled = self.settled_sent = self.engine.settled_id()
        proto.send(proto.enc.encode(W.WRITES, payload, id=wid, offset=settled), now=True)

    def send_settled(self) -> None:
        """A Primary tells the peer its settled id (wire version 6) when it moved since last
        told: with writes, pings, and before it closes the connection on purpose."""
        proto = self.proto
        if proto is not None and proto.version >= W.VERSION_SETTLED and self.engine.role == PRIMARY:
            settled = self.engine.settled_id()
            if settled > self.settled_sent:
                self.settled_sent = settled
                proto.send(proto.enc.encode(W.SETTLED, id=settled))

    @property
    def batches(self) -> bool:
        """The peer takes write batches (wire version 4)."""
        return self.proto is not None and self.proto.version >= W.VERSION_BATCH

    def send_zero(self, wid: int, offset: int, length: int, fua: bool) -> None:
        assert self.proto is not None
        self.send_settled()
        self.proto.send(
            self.proto.enc.encode(W.ZERO, U64.pack(length), flags=W.F_FUA if fua else 0, id=wid, offset=offset)
        )

    def send_flush(self, fid: int) -> None:
        assert self.proto is not None
        self.proto.send(self.proto.enc.encode(W.FLUSH, id=fid))

    def send_read(self, rid: int, offset: int, length: int) -> None:
        assert self.proto is not None
        self.proto.send(self.proto.enc.encode(W.RD_REQ, U64.pack(length), id=rid, offset=offset))

    def send_update(self) -> None:
        if self.proto is not None and self.proto.authed:
            self.proto.send(self.proto.enc.json(W.UPDATE, self._state()))

    def oos_bytes(self) -> int:
        """Bytes out of sync with this peer (on a SyncTarget: what the resync has left to do)."""
        if self.repl == "SyncTarget" and self.progress is not None:
            return max(self.progress.total - self.progress.done, 0)
        return self.engine.bitmaps[self.node_id].count() * 4096

    def status(self) -> dict[str, Any]:
        e = self.engine
        lag = sum(p.length for p in e.pending.values() if self.node_id in p.peers)
        if e.flight is not None and len(e.flight):
            lag += e.flight.lag(e.peer_bits[self.node_id])
        st: dict[str, Any] = {
            "node_id": self.node_id,
            "name": self.name,
            "address": self.address,
            "connection": self.conn,
            "replication": self.repl,
            "peer_role": self.peer_role,
            "peer_disk": self.peer_disk,
            "out_of_sync_bytes": self.oos_bytes(),
            "send_buffer_bytes": self.proto.buffered_bytes() if self.proto is not None else 0,
            "wire_version": self.proto.version if self.proto is not None and self.proto.authed else None,
            "unacked_bytes": lag,
            "unsettled_writes": len(self.unsettled),  # from this Primary, not yet known to be on every replica
            "bitmap_uuid": f"{self.engine.bitmap_uuid(self.node_id):016X}",
            "split_brain": self.split_brain,
            "peer_current_uuid": f"{int(self.peer_state['current']):016X}"
            if self.peer_state and self.proto is not None
            else None,
            "reason": self.standalone_reason,
        }
        if self.progress is not None:
            st["sync"] = self.progress.status()
        if self.verify:
            st["verify"] = {k: v for k, v in self.verify.items() if not k.startswith("_")}
        syncing = self.repl in ("SyncSource", "SyncTarget") and self.progress is not None
        rate = float(st["sync"]["rate_bytes_per_second"] or 0) if syncing else 0.0
        self.engine.m.resync_rate.labels(self.engine.cfg.resource, str(self.node_id)).set(rate)
        self.engine.m.update_peer(self.node_id, self.conn, self.repl, st["out_of_sync_bytes"], lag, self.split_brain)
        return st

    # ---- connection lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
        """Dial the peer (only the higher node id dials) with capped, jittered backoff."""
        net = self.engine.cfg.net
        delay = net.reconnect_min
        dials = self.engine.cfg.node_id > self.node_id
        while True:
            if self.conn == "StandAlone" or self.proto is not None or not dials:
                self.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 1.0)
                if self.proto is not None:
                    delay = net.reconnect_min
                continue
            if self.failed_handshakes:
                backoff = min(net.reconnect_min * 2 ** (self.failed_handshakes - 1), net.reconnect_max)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                if self.conn == "StandAlone" or self.proto is not None:
                    continue
            host, _, port = self.address.rpartition(":")
            loop = asyncio.get_running_loop()
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: self.node.new_protocol(self.node_id), host.strip("[]"), int(port)),
                    net.connect_timeout,
                )
                await asyncio.wait_for(asyncio.shield(proto.ready), net.connect_timeout + 1)
            except (TimeoutError, OSError):
                pass
            if self.proto is None:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, net.reconnect_max)

    def attached(self, proto: LinkProtocol) -> None:
        if self.proto is not None:
            self.proto.link = None  # the new connection wins; the old one dies quietly
            old = self.proto
            self.proto = None
            self._lost(old, "replaced by a new connection")
            old.abort("replaced")
        if self.conn == "StandAlone":
            proto.abort(f"StandAlone: {self.standalone_reason}")
            proto.link = None
            return
        self.proto = proto
        self.conn, self.repl = "Connected", "Off"
        self.peer_state, self.peer_bitmap, self.peer_decision, self.decision = None, bytearray(), None, None
        self.settled_sent = 0
        self.unsettled.clear()
        self.reconcile = None  # the bitmap sent below holds every mark so far
        self.last_rx = asyncio.get_event_loop().time()
        if self.engine.role == PRIMARY:
            self.engine.hold(f"handshake:{self.node_id}", f"connecting node {self.node_id}", acks=False)
        log.info("peer connected", extra=kv(peer=self.node_id))
        self.engine.events.publish("peer-connected", peer=self.node_id)
        self.sent_state = self._state()  # this side decides on what it told the peer: the same facts
        proto.send(proto.enc.json(W.STATE, self.sent_state))
        bm = self.engine.bitmaps[self.node_id].to_bytes()
        for i in range(0, max(len(bm), 1), BITMAP_CHUNK):
            last = i + BITMAP_CHUNK >= len(bm)
            proto.send(proto.enc.encode(W.BITMAP, bm[i : i + BITMAP_CHUNK], offset=i, flags=W.F_LAST if last else 0))
        self.wake.set()
        self.engine.spawn(self._pinger(proto))

    def detached(self, proto: LinkProtocol, why: str) -> None:
        if proto is self.proto:
            self.proto = None
            self._lost(proto, why)

    def _lost(self, proto: LinkProtocol, why: str) -> None:
        was = self.repl in ("Established", "SyncSource") and self.peer_disk == UP_TO_DATE
        lost_primary = self.peer_role == PRIMARY and self.engine.role != PRIMARY
        if lost_primary:
            self._primary_lost(why)
        self.unsettled.clear()
        self.failed_handshakes = 0 if self.repl != "Off" else self.failed_handshakes + 1
        if self.resync_task is not None:
            self.resync_task.cancel()
            self.resync_task = None
        if self.conn != "StandAlone":
            self.conn = "Connecting"
        self.repl, self.peer_role, self.peer_disk = "Off", "Unknown", "DUnknown"
        self.engine.release(f"handshake:{self.node_id}")
        self.engine.set_congested(self.node_id, False)
        self.engine.peer_lost(self.node_id, was)
        self.engine.spawn(self.engine.persist_quietly())
        log.warning("peer connection lost", extra=kv(peer=self.node_id, reason=why))
        self.engine.events.publish("peer-lost", peer=self.node_id, reason=why)
        self.wake.set()
        if lost_primary:  # the other replicas learn that this one follows no Primary now
            self.engine.announce()
            for other in self.node.links.values():
                other.maybe_reconcile()

    def _primary_lost(self, why: str) -> None:
        """The Primary may have died with writes on some replicas only: those this replica
        took above the Primary's settled id are marked out of sync with every other replica.
        Once such a replica follows this Primary no more either (it died, or it is cut off from
        both), the link to it reconnects, so the handshake resyncs the union of what each
        marked (DRBD 9 does the same after a lost Primary). While it still follows the Primary,
        only this replica's link was cut: the Primary's bitmap tracks what this one misses."""
        exts = sorted({x for _, xs in self.unsettled for x in xs})
        others = [link for link in self.node.links.values() if link is not self]
        if not exts or not others:
            return
        e = self.engine
        e.mark_extents(exts, [link.node_id for link in others])
        log.warning(
            "Primary lost with writes in flight: their extents marked out of sync with the other replicas",
            extra=kv(primary=self.node_id, extents=len(exts), writes=len(self.unsettled), reason=why),
        )
        e.events.publish("in-flight-marked", primary=self.node_id, extents=len(exts),
                         peers=[link.node_id for link in others])  # fmt: skip
        for link in others:
            link.reconcile = (self.node_id, len(exts))

    def maybe_reconcile(self) -> None:
        """Reconnect to resync what a lost Primary had in flight, once this peer no longer
        follows that Primary (its handshake or update says so)."""
        if self.reconcile is None or self.proto is None:
            return
        primary, n = self.reconcile
        if self.peer_state is not None and self.peer_state.get("follows") == primary:
            return
        self.reconcile = None
        self.proto.abort(f"Primary node {primary} lost with writes in flight: resyncing their {n} extent(s) "
                         f"with node {self.node_id}")  # fmt: skip

    async def _pinger(self, proto: LinkProtocol) -> None:
        net = self.engine.cfg.net
        loop = asyncio.get_running_loop()
        while self.proto is proto:
            await asyncio.sleep(net.ping_interval)
            if self.proto is not proto:
                return
            if loop.time() - self.last_rx > net.ping_timeout:
                proto.abort(f"no traffic from node {self.node_id} for {net.ping_timeout}s (ping timeout)")
                return
            self.send_settled()
            proto.send(proto.enc.encode(W.PING))

    def standalone(self, why: str) -> None:
        self.conn, self.standalone_reason = "StandAlone", why
        if self.proto is not None:
            self.send_settled()  # a Primary that leaves on purpose leaves nothing in doubt
            self.proto.abort(why)
        self.engine.events.publish("peer-standalone", peer=self.node_id, reason=why, split_brain=self.split_brain)

    def reconnect(self, discard_my_data: bool = False) -> None:
        self.conn, self.standalone_reason, self.split_brain = "Connecting", "", False
        self.discard_my_data, self.failed_handshakes = discard_my_data, 0
        self.wake.set()

    # ---- handshake: state, bitmaps, decision ------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """This replica as the handshake and its updates describe it to this peer (and as this
        side's own sync decision sees it: the same facts on both sides)."""
        e, sb = self.engine, self.engine.sb
        disk = sb.disk_state
        if disk == CONSISTENT and (self.proto is None or self.proto.version < W.VERSION_CONSISTENT):
            disk = OUTDATED  # a peer that predates Consistent decides as for Outdated: so does this side
        return {
            "current": sb.current,
            "bitmap": e.bitmap_uuid(self.node_id),
            "history": sb.history,
            "disk": disk,
            "role": e.role,
            "primary_since": sb.primary_since,
            "changes": e.bitmaps[self.node_id].count(),
            "crashed": e.crashed_primary,
            "size": e.size,
            "protocol": e.protocol,
            "discard_my_data": self.discard_my_data,
            "two_primaries": e.cfg.net.allow_two_primaries,
            "follows": self._following(),
        }

    def _side(self, s: dict[str, Any], node_id: int) -> Side:
        return Side(
            node_id,
            int(s["current"]),
            int(s["bitmap"]),
            tuple(s["history"][:2]),
            s["disk"],  # type: ignore[arg-type]
            s["role"] == PRIMARY,
            float(s["primary_since"]),
            int(s["changes"]),
            bool(s["crashed"]),
            bool(s.get("discard_my_data")),
        )

    def _decide(self) -> None:
        assert self.peer_state is not None and self.proto is not None
        ps, e = self.peer_state, self.engine
        if ps["size"] != e.size:
            d = Decision(
                DISCONNECT,
                reason=f"size mismatch: this replica {e.size} bytes, node {self.node_id} "
                f"{ps['size']} bytes (resize the smaller one)",
                retry=True,
            )
        elif ps["protocol"] != e.protocol:
            d = Decision(DISCONNECT, reason=f"protocol mismatch: {e.protocol} here, {ps['protocol']} on the peer",
                         retry=True)  # fmt: skip
        elif ps["role"] == PRIMARY and e.role == PRIMARY and not e.cfg.net.allow_two_primaries:
            d = Decision(DISCONNECT, reason="both replicas are Primary and two primaries are not allowed", retry=True)
        else:
            sbp = e.cfg.split_brain
            d = decide_sync(
                self._side(self.sent_state, e.cfg.node_id),
                self._side(ps, self.node_id),
                Policy(sbp.after_sb_0pri, sbp.after_sb_1pri, sbp.after_sb_2pri),
            )
        self.decision = d
        self.proto.send(
            self.proto.enc.json(
                W.DECIDE,
                {"action": d.action, "full": d.full, "reason": d.reason, "split_brain": d.split_brain},
            )
        )
        self._maybe_act()

    def _maybe_act(self) -> None:
        d, pd = self.decision, self.peer_decision
        if d is None or pd is None:
            return
        e = self.engine
        e.release(f"handshake:{self.node_id}")
        mine = d.mirrored()
        if (pd["action"], pd["full"]) != (mine.action, mine.full):  # a bug, or a version mix: ask again
            why = f"sync decisions disagree: here {d.action}, on node {self.node_id} {pd['action']}"
            self.standalone_reason = why
            if self.proto is not None:
                self.proto.abort(why)
            return
        self.peer_role = self.peer_state["role"] if self.peer_state else "Unknown"
        self.peer_disk = self.peer_state["disk"] if self.peer_state else "DUnknown"
        log.info("sync decision", extra=kv(peer=self.node_id, action=d.action, full=d.full, reason=d.reason))
        e.events.publish(
            "sync-decision",
            peer=self.node_id,
            action=d.action,
            full=d.full,
            reason=d.reason,
            split_brain=d.split_brain,
        )
        self.discard_my_data = False
        deferred = self._target_deferred() if d.action == TARGET else ""
        if deferred and self._both_follow_one_primary():  # a resync of nothing: done at once
            log.info("resync skipped", extra=kv(peer=self.node_id, reason="both replicas follow one Primary"))
            self.split_brain, self.standalone_reason = False, ""
            self.repl, self.progress = "SyncTarget", Progress(total=0)
            assert self.proto is not None
            self.proto.send(self.proto.enc.json(W.RS_DONE, {}))
            return
        if deferred:  # the peer agreed to be the source; this side asks again later
            d = Decision(DISCONNECT, reason=deferred, retry=True)
        if d.action == DISCONNECT:
            self.split_brain = d.split_brain
            if d.pri_lost:
                self.node.pri_lost(self.node_id, d.reason)
            if d.retry:  # a mismatch that a config change, a demotion or a resync will fix: keep trying
                self.standalone_reason = d.reason
                if self.proto is not None:
                    self.proto.abort(d.reason)
                return
            self.standalone(d.reason)
            return
        self.split_brain, self.standalone_reason = False, ""
        if self.peer_role == PRIMARY:  # a Primary again (alive): its bitmaps cover what any lost link missed
            for other in self.node.links.values():
                other.reconcile = None
        if d.action == NONE:
            self.repl = "Established"
            if e.sb.disk_state in (OUTDATED, CONSISTENT) and self.peer_disk == UP_TO_DATE:
                self._up_to_date("same generation as an UpToDate peer, nothing marked: nothing was missed")
            e.peer_established(self.node_id)
            self._adopt_if_follower()
        elif d.action == SOURCE:
            if e.sb.disk_state == CONSISTENT:  # what the peer has, this replica has too: the data to keep
                self._up_to_date(f"sync source for node {self.node_id} ({d.reason})")
            self.repl, self.peer_disk = "SyncSource", INCONSISTENT
            self.progress = Progress(total=self._sync_bits(d).count() * 4096)
            e.peer_established(self.node_id)
        elif d.action == TARGET:
            self.repl = "SyncTarget"
            e.sb.disk_state = INCONSISTENT
            e.m.update(e)
            self.resync_task = e.spawn(resync.run_target(self, self._sync_bits(d)))

    def _target_deferred(self) -> str:
        """Why this replica must not resync from this peer now (empty: it may). One resync at a
        time: two sources' answers could interleave with each other's and the Primary's writes.
        And never from a Secondary while a Primary replicates to this replica: the Secondary's
        answer for a block can overtake the Primary's newer write of it, on another link, and
        land after it. The link reconnects and decides again (the other resync may have made
        this one moot)."""
        for other in self.node.links.values():
            if other is self:
                continue
            if other.repl == "SyncTarget":
                return f"resync from node {self.node_id} deferred: this replica resyncs from node {other.node_id} first"
            if self.peer_role != PRIMARY and other.peer_role == PRIMARY and other.replicating:
                return (f"resync from Secondary node {self.node_id} deferred: Primary node {other.node_id} "
                        "replicates to this replica")
        follows = (self.peer_state or {}).get("follows")
        if self.peer_role != PRIMARY and follows is not None and follows != self._following():
            # its data moves on under the resync (the Primary writes to it, not to this replica):
            # this replica would end UpToDate with blocks older than the Primary's. The Primary's
            # own bitmap resyncs this replica once they reconnect.
            return (f"resync from Secondary node {self.node_id} deferred: it follows Primary node {follows}, "
                    "which this replica must resync from")
        return ""

    def _both_follow_one_primary(self) -> bool:
        """This replica is UpToDate and Established with a Primary that the peer (a Secondary)
        says it follows too: the Primary keeps both as they must be (its bitmaps track what
        either misses), so what they marked for each other needs no resync."""
        following = self._following() if self.peer_role != PRIMARY else None
        return following is not None and following == (self.peer_state or {}).get("follows")

    def _following(self) -> int | None:
        """The Primary this replica is Established with while UpToDate (None: none)."""
        if self.engine.sb.disk_state != UP_TO_DATE:
            return None
        for other in self.node.links.values():
            if other is not self and other.peer_role == PRIMARY and other.repl == "Established" and other.proto:
                return other.node_id
        return None

    def _up_to_date(self, why: str) -> None:
        e = self.engine
        was, e.sb.disk_state = e.sb.disk_state, UP_TO_DATE
        log.warning("disk is UpToDate", extra=kv(was=was, peer=self.node_id, reason=why))
        e.events.publish("disk", disk=UP_TO_DATE, was=was, reason=why)
        e.spawn(e.persist_quietly())
        e.m.update(e)
        e.announce()

    def _sync_bits(self, d: Decision) -> Bitmap:
        e = self.engine
        theirs = Bitmap(e.size // 4096, self.peer_bitmap)
        return sync_set(e.size // 4096, e.bitmaps[self.node_id], theirs, d.full)

    def _adopt_if_follower(self) -> None:
        """A Secondary in sync follows the Primary's data generation."""
        e, ps = self.engine, self.peer_state
        if (
            ps
            and e.role != PRIMARY
            and ps["role"] == PRIMARY
            and self.repl == "Established"
            and e.sb.disk_state == UP_TO_DATE
            and int(ps["current"]) != e.sb.current
        ):
            e.adopt_generation(int(ps["current"]), ps["history"])
            e.announce()  # a third replica's view of this one stays true

    # ---- frames -----------------------------------------------------------------------------
    def _ack(self, ftype: int, wid: int) -> None:
        """Acknowledge a replicated write: from wire version 3 gathered, and sent for all the
        writes of one socket read by :meth:`flush_acks` (after they were handled)."""
        assert self.proto is not None
        if self.proto.version >= W.VERSION_ACK_LISTS:
            self.acks[ftype].append(wid)
        else:
            self.proto.send(self.proto.enc.encode(ftype, id=wid))

    def flush_acks(self) -> None:
        """Send the gathered acknowledgements (called once the frames of a read are handled)."""
        for one, many in ((W.ACK_RECV, W.ACK_RECVS), (W.ACK_WRITE, W.ACK_WRITES)):
            ids = self.acks[one]
            if ids:
                self.acks[one] = []
                if self.proto is not None:
                    self.proto.send(self.proto.enc.encode(many, W.pack_ids(ids)))

    def take_frames(self, dec: W.Decoder) -> None:
        """The compiled paths for the frames of a replicated write, before the frame parser."""
        if self.engine.role == PRIMARY:
            self.take_acks(dec)
        else:
            self.take_writes(dec)

    def take_acks(self, dec: W.Decoder) -> None:
        """A Primary's acknowledgements at the head of the receive buffer, as :meth:`on_frame`
        takes them."""
        ids = dec.take_acks(W.ACK_RECVS, W.ACK_WRITES)
        if ids:
            e = self.engine
            self.last_rx = e.loop.time()
            e.peer_acks(self.node_id, ids)

    def _takes_writes(self) -> bool:
        """Whether the compiled paths may take this link's WRITES frames: not before the
        connection decided, from a peer that is not Primary, below wire version 6, or without
        a disk (:meth:`on_frame` then takes them, and refuses what it must)."""
        if self.decision is None or self.proto is None or self.proto.version < W.VERSION_SETTLED:
            return False
        if self.engine.diskless():
            return False
        return self.peer_role == PRIMARY or (self.peer_state or {}).get("role") == PRIMARY

    def take_writes(self, dec: W.Decoder) -> None:
        """The compiled path for what a Secondary receives most, the WRITES frames at the head
        of the receive buffer (``Decoder.take_writes``), with the same effect as
        :meth:`on_frame` on each; it stops at anything else (the frame parser takes the rest)."""
        if not self._takes_writes():
            return
        e = self.engine
        took = dec.take_writes(W.WRITES, e.size, e.fd, e.al.table())
        if took is not None:
            ids, exts, settled, failed = took
            self._took(ids, exts, settled, failed, acked=False)

    def may_serve(self) -> bool:
        """Whether :meth:`serve` may take over (after a read was handled, its acknowledgements
        sent): a Secondary replicating from its Primary, nothing queued, no large frame arriving."""
        proto = self.proto
        return (
            self.engine.role != PRIMARY  # (first: a Primary asks on every acknowledgement it reads)
            and fastpath.serve_writes is not None
            and proto is not None
            and proto.q is not None
            and proto.q.empty()
            and proto.transport is not None
            and not proto.transport.is_closing()
            and proto.dec.rx.big is None
            and self._takes_writes()
        )

    def serve(self, budget: float = SERVE_BUDGET) -> str:
        """A Secondary's steady state without an event-loop turn per write batch: the compiled
        ``serve_writes`` reads the replication socket itself, takes the WRITES frames as
        :meth:`take_writes` does and acknowledges each frame once written (protocols B and C:
        the Primary answers one while the next is written; A: a read's worth in one), until a frame
        the parser must take arrives ("frame"), the event loop has anything else to do
        ("loop": it watches the loop's own poll descriptor), ``budget`` seconds pass or
        ``SERVE_FRAMES`` were taken ("budget"), the socket will take no more ("blocked"), a
        write fails ("failed") or the connection ends ("closed"). The event loop stops reading
        the socket meanwhile. Returns the reason."""
        proto, e = self.proto, self.engine
        assert proto is not None and proto.q is not None and proto.transport is not None
        dec, enc, rx = proto.dec, proto.enc, proto.dec.rx
        ack = W.ACK_RECVS if e.cfg.net.protocol == "B" else W.ACK_WRITES
        proto.transport.pause_reading()
        try:
            rx.start, rx.end, dec.seq, enc.seq, ids, exts, settled, failed, unsent, why = fastpath.serve_writes(
                proto.q.sock.fileno(), rx.buf, rx.start, rx.end, W.WRITES, dec.seq, dec.mac, e.size, e.fd,
                e.al.table(), AL_EXTENT, ack, enc.seq, enc.mac, loop_poll_fd(e.loop), budget, SERVE_FRAMES,
                e.cfg.net.protocol != "A",  # each frame acknowledged once written: B and C wait for it
            )  # fmt: skip
        finally:
            proto.transport.resume_reading()
        if unsent:
            proto.send([unsent], now=True)
        self._took(ids, exts, settled, failed, acked=True)
        return str(why)

    def _took(
        self, ids: list[int], exts: list[tuple[int, ...]], settled: int, failed: tuple[int, int] | None, acked: bool
    ) -> None:
        """What the compiled paths took: as :meth:`on_frame` would have left it (``acked``: the
        acknowledgements of ``ids`` are sent already)."""
        e = self.engine
        if settled < 0:
            return
        self.last_rx = e.loop.time()
        acks = self.acks[W.ACK_RECV if e.cfg.net.protocol == "B" else W.ACK_WRITE]
        if not acked:
            acks.extend(ids)
        self.unsettled.extend(zip(ids, exts, strict=True))
        # as on_frame's settle-then-append per frame: ids and settled ids both grow, and a write's
        # id is above the settled id it carries
        self._settle(settled)
        if failed is not None:
            fid, err = failed
            if e.cfg.net.protocol == "B":
                acks.append(fid)
            self._write_failed(fid, OSError(err, os.strerror(err)))

    def _write_failed(self, fid: int, exc: OSError) -> None:
        """A replicated write could not be written here: detach, and tell the Primary."""
        assert self.proto is not None
        e = self.engine
        if not e.diskless():
            e.io_error("replicated write", exc)
            e.detach(f"replicated write error: {exc}")
        self.proto.send(self.proto.enc.encode(W.NACK, b"write", id=fid))

    def on_frame(self, f: W.Frame) -> None:
        assert self.proto is not None
        self.last_rx = self.engine.loop.time()
        e, t = self.engine, f.type
        if t in (W.WRITE, W.ZERO, W.TRIM, W.WRITES):
            if self.decision is None or (self.peer_role != PRIMARY and (self.peer_state or {}).get("role") != PRIMARY):
                raise W.WireError("replicated write from a peer that is not Primary")
            if e.cfg.net.protocol == "B":
                self._ack(W.ACK_RECV, f.id)
            settles = self.proto.version >= W.VERSION_SETTLED
            try:
                if t == W.WRITES:
                    if self.proto.version < W.VERSION_BATCH:
                        raise W.WireError(f"WRITES frame on wire version {self.proto.version}")
                    if settles:
                        self._settle(f.offset)
                    exts: Iterable[int] = e.apply_batch(f.payload)
                elif t == W.WRITE:
                    e.apply_remote(f.offset, f.payload, len(f.payload))
                    exts = extents(f.offset, len(f.payload))
                else:
                    length = U64.unpack(f.payload)[0]
                    e.apply_remote(f.offset, None, length, punch=t == W.TRIM)
                    exts = extents(f.offset, length)
                if settles:
                    self.unsettled.append((f.id, exts))
            except OSError as exc:
                self._write_failed(f.id, exc)
                return
            if f.flags & W.F_FUA:
                e.spawn(self._sync_then(W.ACK_WRITE, f.id, e.cfg.net.protocol != "B"))
            elif e.cfg.net.protocol != "B":
                self._ack(W.ACK_WRITE, f.id)
        elif t in (W.ACK_WRITE, W.ACK_RECV):
            e.peer_ack(self.node_id, f.id)
        elif t in (W.ACK_WRITES, W.ACK_RECVS):
            e.peer_acks(self.node_id, list(W.unpack_ids(f.payload)))
        elif t == W.SETTLED:
            if self.proto.version < W.VERSION_SETTLED:
                raise W.WireError(f"SETTLED frame on wire version {self.proto.version}")
            self._settle(f.id)
        elif t == W.FLUSH:
            e.spawn(self._sync_then(W.ACK_FLUSH, f.id, True))
        elif t == W.ACK_FLUSH:
            e.peer_ack(self.node_id, f.id, flush=True)
        elif t == W.NACK:
            if bytes(f.payload) == b"read":
                e.remote_read_done(self.node_id, f.id, None)
            else:
                e.peer_nack(self.node_id, f.id, flush=bytes(f.payload) == b"flush")
        elif t == W.RESIZE:
            e.spawn(self._on_resize(f.id, int(f.json()["size"])))
        elif t == W.RESIZED:
            fut = self.resize_waiters.pop(f.id, None)
            if fut is not None and not fut.done():
                fut.set_result(f.json())
        elif t == W.RD_REQ:
            self._on_read_request(f)
        elif t == W.RD_DATA:
            e.remote_read_done(self.node_id, f.id, f.payload)
        elif t == W.PING:
            self.proto.send(self.proto.enc.encode(W.PONG))
        elif t == W.PONG:
            pass
        elif t == W.STATE:
            self.peer_state = f.json()
        elif t == W.BITMAP:
            if f.offset != len(self.peer_bitmap):
                raise W.WireError("bitmap chunk out of order")
            self.peer_bitmap += f.payload
            if f.flags & W.F_LAST:
                self._decide()
        elif t == W.DECIDE:
            self.peer_decision = f.json()
            self._maybe_act()
        elif t == W.UPDATE:
            self._on_update(f.json())
        elif t == W.RS_REQ:
            resync.on_rs_req(self, f)
        elif t in (W.RS_DATA, W.RS_SAME):
            resync.on_rs_reply(self, f)
        elif t == W.RS_ACK:
            e.bitmaps[self.node_id].clear(f.offset, f.id)
            e.bm_dirty.add(self.node_id)
            e.m.resync_bytes.labels(e.cfg.resource, str(self.node_id)).inc(f.id)
            if self.progress:
                self.progress.add(f.id, False)
        elif t == W.RS_DONE:
            resync.on_rs_done(self, f.json())
        elif t == W.OV_REQ:
            same = digest(e.read_raw(f.offset, f.id)) == bytes(f.payload)
            self.proto.send(self.proto.enc.encode(W.OV_RES, b"\x01" if same else b"\x00", id=f.id, offset=f.offset))
        elif t == W.OV_RES:
            self.node.verify_result(self, f.offset, f.id, bytes(f.payload) == b"\x01")
        elif t == W.ERROR:
            self.standalone(f"peer refused: {bytes(f.payload).decode(errors='replace')}")
        else:
            raise W.WireError(f"unknown frame type {t}")

    def _settle(self, upto: int) -> None:
        """Every write up to ``upto`` reached every replica the Primary sent it to."""
        q = self.unsettled
        while q and q[0][0] <= upto:
            q.popleft()

    async def _sync_then(self, ack: int, fid: int, send: bool) -> None:
        proto, e = self.proto, self.engine
        try:
            if e.diskless():
                raise OSError(5, "Diskless")
            await asyncio.to_thread(os.fdatasync, e.fd)
        except OSError as exc:
            if not e.diskless():
                e.io_error("fdatasync", exc)
                e.detach(f"fdatasync error: {exc}", always=True)
            if proto is self.proto and proto is not None:
                proto.send(proto.enc.encode(W.NACK, b"flush" if ack == W.ACK_FLUSH else b"write", id=fid))
            return
        if send and proto is self.proto and proto is not None:
            proto.send(proto.enc.encode(ack, id=fid))

    async def _on_resize(self, rid: int, size: int) -> None:
        proto = self.proto
        try:
            await self.engine.grow(size)
            reply: dict[str, Any] = {"ok": True}
        except (OSError, disk.AttachError) as exc:
            reply = {"ok": False, "error": str(exc)}
        if proto is self.proto and proto is not None:
            proto.send(proto.enc.json(W.RESIZED, reply, id=rid))

    async def request_resize(self, size: int, timeout: float) -> dict[str, Any]:
        """Ask the peer to grow to ``size`` (the Primary coordinates a resize)."""
        if self.proto is None:
            return {"ok": False, "error": "not connected"}
        rid = self.engine.next_id
        self.engine.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.resize_waiters[rid] = fut
        self.proto.send(self.proto.enc.json(W.RESIZE, {"size": size}, id=rid))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return {"ok": False, "error": f"no answer within {timeout}s"}
        finally:
            self.resize_waiters.pop(rid, None)

    def _on_read_request(self, f: W.Frame) -> None:
        """A Diskless Primary reads through this replica."""
        assert self.proto is not None
        e = self.engine
        (length,) = U64.unpack(f.payload)
        if e.diskless() or e.sb.disk_state != UP_TO_DATE or f.offset + length > e.size or length > W.MAX_PAYLOAD - 1024:
            self.proto.send(self.proto.enc.encode(W.NACK, b"read", id=f.id))
            return
        try:
            data = os.pread(e.fd, length, f.offset)
        except OSError as exc:
            e.io_error("read for peer", exc)
            e.detach(f"read error: {exc}")
            self.proto.send(self.proto.enc.encode(W.NACK, b"read", id=f.id))
            return
        self.proto.send(self.proto.enc.encode(W.RD_DATA, data, id=f.id, offset=f.offset))

    def _on_update(self, st: dict[str, Any]) -> None:
        if self.peer_state is not None:
            self.peer_state.update(st)
        if st.get("role") != PRIMARY:  # it stepped down alive: its bitmaps track what differs
            self.unsettled.clear()
        self.maybe_reconcile()
        if self.decision is not None:
            self.peer_role = st["role"]
            if self.repl != "SyncSource":
                self.peer_disk = st["disk"]
            self._adopt_if_follower()
