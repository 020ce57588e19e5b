"""The replica: role, disk state, generation identifiers, bitmaps, and the write path.

Writes on the Primary: forward to every replicating peer, write locally (inline ``pwrite``:
a thread hop per request costs 10x), mark the bitmap of every peer that did not get it, and
acknowledge per protocol (A: local; B: peer received; C: peer wrote). Two gates stand in
front of the client: *submission holds* (a peer handshake, a pending fence-peer, a lapsed
deadline) queue new requests before they touch any disk, and *acknowledgement holds* (fence,
deadline) keep replies back. Nothing held has been acknowledged, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from hastack_blockrepl import disk, fastpath, iozero
from hastack_blockrepl.actlog import ActivityLog, extents
from hastack_blockrepl.bitmap import Bitmap
from hastack_blockrepl.disk import Backing
from hastack_blockrepl.gate import Done, WriteGate
from hastack_blockrepl.inflight import Link, Pending
from hastack_blockrepl.meta import (
    AL_SLOTS,
    CONSISTENT,
    DAY0,
    DISKLESS,
    INCONSISTENT,
    UP_TO_DATE,
    Super,
    boot_id,
    new_uuid,
)
from hastack_blockrepl.metrics import BUCKETS, Metrics
from hastack_blockrepl.nbdproto import EIO, EPERM
from hastack_blockrepl.rxbuf import stable
from hastack_common.config_blockrepl import AL_EXTENT, BlockreplConfig
from hastack_common.ctlsock import EventBus
from hastack_common.logs import kv

log = logging.getLogger(__name__)
PRIMARY, SECONDARY = "Primary", "Secondary"
IDLE_POLL = 0.005  # seconds between looks while waiting for writes in flight to end


class Engine:
    def __init__(self, cfg: BlockreplConfig, backing: Backing, sb: Super, events: EventBus, metrics: Metrics) -> None:
        self.cfg, self.backing, self.sb, self.events, self.m = cfg, backing, sb, events, metrics
        self.size = backing.size
        self.fd = backing.fd
        self.role = SECONDARY
        self.protocol = cfg.net.protocol
        self.links: dict[int, Link] = {}
        self.bitmaps: dict[int, Bitmap] = {}
        self.bm_dirty: set[int] = set()
        self.crashed_primary = False
        self.al = ActivityLog(AL_SLOTS)
        self.pending: dict[int, Pending] = {}
        # write batches the Primary's compiled serve loop started (primary.py), and each peer's bit
        self.flight = fastpath.Flight(BUCKETS) if fastpath.Flight is not None else None
        self.peer_bits = {p.node_id: 1 << i for i, p in enumerate(cfg.peers)}
        self.remote_reads: dict[int, tuple[int, Callable[[int, bytes], None]]] = {}
        self.flushes: dict[int, Pending] = {}
        self.next_id = 1
        self.serve_stops: dict[str, int] = {}  # why the serve loop handed back (primary.py), counted
        self.gate = WriteGate(cfg.resource, events, lambda: self.m.update(self))
        self.need_rotate = False
        self.nbd_clients = 0
        self.counters: dict[str, int] = {
            "reads": 0,
            "writes": 0,
            "flushes": 0,
            "trims": 0,
            "zeroes": 0,
            "io_errors": 0,
            "held_writes": 0,
            "write_batches": 0,
            "served_batches": 0,  # of those, by the serve loop (primary.py)
            "drain_timeouts": 0,  # demotions that found writes still in flight after DRAIN_TIMEOUT
        }
        self.fence: Callable[[int], None] | None = None  # set by the shell: starts fencing a peer
        self._md_lock = asyncio.Lock()
        self._txn: asyncio.Future[None] | None = None
        self._txn_exts: set[int] = set()
        self._congested: set[int] = set()
        self._uncongest_waiters: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.get_event_loop()
        self._after_read: list[Callable[[], None]] | None = None
        if self.flight is not None:
            self.m.latencies.sources.append(self.flight.latency)

    # ---- start-up -------------------------------------------------------------------------
    def load(self) -> None:
        """Load bitmaps and the activity log; recover a crashed Primary (AL merged into bitmaps)."""
        store = self.backing.store
        for p in self.cfg.peers:
            idx, _ = self.sb.slot(p.node_id)
            self.bitmaps[p.node_id] = Bitmap(self.size // 4096, store.load_bitmap(idx))
        active = store.load_al()
        boot = boot_id()
        rebooted = self.sb.boot_id != boot
        self.sb.boot_id = boot
        unclean = not self.sb.clean
        self.crashed_primary = unclean and self.sb.primary
        if self.crashed_primary or (unclean and rebooted):
            # A crashed Primary's log lists writes its peers may lack; after a reboot (the page
            # cache gone) any replica's log lists writes this disk may lack.
            self._merge_al(active)
            log.warning(
                "recovering after an unclean stop: activity log merged into bitmaps",
                extra=kv(extents=len(active), was_primary=self.sb.primary, rebooted=rebooted),
            )
        if unclean and rebooted and active and self.sb.disk_state == UP_TO_DATE and self.cfg.peers:
            # Writes are acknowledged once in the page cache (durable at the next FLUSH): a peer
            # that stayed up may hold some this disk lacks (it resyncs them from that peer); a
            # peer that went down too holds none this disk needs (then this one may be the source).
            self.sb.disk_state = CONSISTENT
            log.warning(
                "the node restarted without a clean stop of this replica: the disk is Consistent, "
                "not UpToDate, until a peer connects (a peer that stayed up resyncs the activity "
                "log's extents to it)",
                extra=kv(extents=len(active)),
            )
        if self.sb.disk_state == DISKLESS:  # detached after I/O errors: its data cannot be trusted
            log.warning("disk was detached after I/O errors: it rejoins Inconsistent, for a full resync")
            self.sb.disk_state, self.sb.current = INCONSISTENT, DAY0
        self.sb.clean = False
        self.sb.primary = False
        # The data first: what a previous process left in the page cache is durable before the
        # activity log (empty in memory now) is next saved without the extents it listed.
        self.persist_sync()

    def _merge_al(self, active: list[int]) -> None:
        """After a crash: every extent the activity log lists may differ from every peer."""
        self.mark_extents(active, list(self.bitmaps))

    def mark_extents(self, exts: Iterable[int], peers: Iterable[int]) -> None:
        """Whole activity-log extents are out of sync with ``peers``."""
        ranges = [(x * AL_EXTENT, AL_EXTENT) for x in exts]
        for pid in peers:
            self._mark(pid, ranges)

    def persist_sync(self, data: bool = True) -> None:
        """Data (``data``: what the superblock says about the disk holds on disk too), then the
        dirty bitmaps, then the superblock. Blocking: call from a thread or at start/stop."""
        store = self.backing.store
        if data and not self.diskless():
            os.fdatasync(self.fd)
        for pid in list(self.bm_dirty):
            idx, _ = self.sb.slot(pid)
            store.save_bitmap(idx, self.bitmaps[pid].to_bytes(), sync=False)
        self.bm_dirty.clear()
        store.save_super(self.sb)

    async def persist(self) -> None:
        async with self._md_lock:
            await asyncio.to_thread(self.persist_sync)

    def close_clean(self) -> None:
        """An orderly stop: the data durable, then an empty activity log, then a clean superblock
        (a crash between the steps still finds every extent that may lack data)."""
        if not self.diskless():
            os.fdatasync(self.fd)
        self.backing.store.save_al([])
        self.sb.clean = True
        self.sb.primary = False
        self.persist_sync(data=False)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no write is in flight, the engine's or the serve loop's (which finishes its
        own without the engine seeing it: so this looks, every few milliseconds); False on timeout."""
        until = self.loop.time() + timeout
        while self.in_flight():
            if self.loop.time() >= until:
                return False
            await asyncio.sleep(IDLE_POLL)
        return True

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # ---- the write gate -------------------------------------------------------------------
    def hold(self, key: str, why: str, acks: bool) -> None:
        if acks:
            self.drain_flight()  # the per-request bookkeeping holds their answers
        self.gate.hold(key, why, acks)

    def release(self, key: str) -> None:
        self.gate.release(key)

    def _answer(self, p: Pending, err: int) -> None:
        if p.answered:
            return
        p.answered = True
        self.m.latency(p.op, time.perf_counter() - p.t0, p.count)
        self.gate.answer(p.done, err)

    # ---- one socket read's work ------------------------------------------------------------
    def read_begins(self) -> None:
        """A replication connection's read is being handled: what it completes (client replies)
        is sent once at its end (:meth:`read_ends`), not one event-loop turn later."""
        self._after_read = []

    def read_ends(self) -> None:
        hooks, self._after_read = self._after_read, None
        for hook in hooks or ():
            hook()

    def in_read(self) -> bool:
        return self._after_read is not None

    def after_read(self, hook: Callable[[], None]) -> bool:
        """Run ``hook`` at the end of the read being handled; False when there is none."""
        if self._after_read is None:
            return False
        self._after_read.append(hook)
        return True

    # ---- back-pressure --------------------------------------------------------------------
    def congested(self) -> bool:
        return bool(self._congested)

    def set_congested(self, node_id: int, on: bool) -> None:
        if on:
            self._congested.add(node_id)
        else:
            self._congested.discard(node_id)
            if not self._congested:
                waiters, self._uncongest_waiters = self._uncongest_waiters, []
                for w in waiters:
                    w()

    def on_uncongested(self, cb: Callable[[], None]) -> None:
        self._uncongest_waiters.append(cb)

    # ---- client I/O (Primary) -------------------------------------------------------------
    def diskless(self) -> bool:
        return self.sb.disk_state == DISKLESS

    def uptodate_peers(self) -> list[Link]:
        return [lk for lk in self.links.values() if lk.replicating and lk.peer_disk == UP_TO_DATE]

    def check_io(self) -> int:
        if self.role != PRIMARY:
            return EPERM
        if self.diskless() and not self.uptodate_peers():
            return EIO
        return 0

    def reads_locally(self) -> bool:
        """Whether client reads are served from the local disk now (Primary, disk attached)."""
        return self.role == PRIMARY and not self.diskless()

    def read(self, offset: int, length: int) -> bytes | None:
        """Local read; None when it must be served by a peer (Diskless, or the disk just failed)."""
        self.counters["reads"] += 1
        if self.diskless():
            return None
        try:
            return os.pread(self.fd, length, offset)
        except OSError as exc:
            self.io_error("read", exc)
            if not self.detach(f"read error: {exc}"):
                raise
            return None

    def read_remote(self, offset: int, length: int, done: Callable[[int, bytes], None]) -> None:
        peers = self.uptodate_peers()
        if not peers:
            done(EIO, b"")
            return
        rid = self.next_id
        self.next_id += 1
        self.remote_reads[rid] = (peers[0].node_id, done)
        peers[0].send_read(rid, offset, length)

    def remote_read_done(self, node_id: int, rid: int, data: bytes | memoryview | None) -> None:
        got = self.remote_reads.pop(rid, None)
        if got is not None and got[0] == node_id:
            got[1](EIO if data is None else 0, b"" if data is None else bytes(data))

    def announce(self) -> None:
        """Send this replica's state (role, disk, identifiers) to every connected peer."""
        for link in self.links.values():
            link.send_update()

    def detach(self, why: str, always: bool = False) -> bool:
        """DRBD's on-io-error detach: drop the local disk, keep serving through UpToDate peers.
        ``always``: whatever ``onIoError`` says (a failed ``fdatasync``: which blocks did not
        reach the disk is unknown, and the page cache may still show data the disk lacks, so
        no bitmap could name them and passing the error on would leave the replicas apart)."""
        if self.cfg.disk.on_io_error != "detach" and not always:
            return False
        if self.diskless():
            return True
        self.sb.disk_state = DISKLESS
        log.error("detaching the backing disk after an I/O error", extra=kv(reason=why))
        self.events.publish("disk", disk=DISKLESS, reason=why)
        self.m.update(self)
        self.announce()
        self.spawn(self.persist_quietly())
        return True

    async def persist_quietly(self) -> None:
        try:
            await self.persist()
        except OSError as exc:  # the metadata sits on the failing disk (internal metadata)
            log.warning("metadata write failed", extra=kv(error=str(exc)))
            if not self.diskless():
                self.io_error("metadata", exc)
                self.detach(f"metadata write error: {exc}")

    def read_raw(self, offset: int, length: int) -> bytes:
        """Read for resync and verify (any role), clipped to the volume."""
        length = max(0, min(length, self.size - offset))
        return os.pread(self.fd, length, offset)

    def write(self, offset: int, data: bytes | memoryview, fua: bool, done: Done, op: str = "write") -> None:
        err = self.check_io()
        if err:
            done(err)
            return
        if self.gate.blocked():
            self.counters["held_writes"] += 1
            keep = data if op != "write" or stable(data) else bytes(data)
            self.gate.queue(lambda: self.write(offset, keep, fua, done, op), done)
            return
        length = len(data) if op == "write" else int(data)  # zero/trim: data is the length
        if self.need_rotate or (not self.diskless() and not self.al.covers(extents(offset, length))):
            if op == "write" and not stable(data):  # the caller's buffer is reused once it returns
                data = bytes(data)
            fut = self._prepare(offset, length)
            fut.add_done_callback(lambda f: self._after_prepare(f, offset, data, fua, done, op))
            return
        self._apply(offset, data, length, fua, done, op)

    def zero(self, offset: int, length: int, fua: bool, done: Done, trim: bool = False) -> None:
        self.write(offset, length, fua, done, "trim" if trim else "zero")  # type: ignore[arg-type]

    def _after_prepare(self, fut: asyncio.Future[None], offset: int, data: Any, fua: bool, done: Done, op: str) -> None:
        if fut.exception() is not None:
            self.io_error("metadata", fut.exception())
            done(EIO)
        else:
            self.write(offset, data, fua, done, op)

    def _prepare(self, offset: int, length: int) -> asyncio.Future[None]:
        self._txn_exts |= self.al.missing(offset, length)
        if self._txn is None:
            self._txn = self.loop.create_future()
            self.spawn(self._run_txn(self._txn))
        return self._txn

    async def _run_txn(self, fut: asyncio.Future[None]) -> None:
        """One metadata transaction: generation-id rotation and activity-log growth, persisted."""
        async with self._md_lock:
            self._txn = None
            exts, self._txn_exts = self._txn_exts, set()
            try:
                if self.need_rotate:
                    self._rotate()
                    if not self.diskless():
                        await asyncio.to_thread(self.backing.store.save_super, self.sb)
                    self.announce()
                if exts and not self.diskless():  # no local writes, no activity log
                    if self.al.add(exts, busy=self.flight_extents()):  # it leaves only once its data is durable
                        await asyncio.to_thread(self.persist_sync)
                    await asyncio.to_thread(self.backing.store.save_al, self.al.active())
                fut.set_result(None)
            except OSError as exc:
                self.io_error("metadata", exc)
                if self.detach(f"metadata write error: {exc}"):
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

    def _rotate(self) -> None:
        """New data generation: peers that are not replicating keep the old one as bitmap UUID."""
        old = self.sb.current
        for pid in self.bitmaps:
            link = self.links.get(pid)
            _, slot = self.sb.slot(pid)
            if (link is None or not link.replicating) and slot.bitmap_uuid == 0:
                slot.bitmap_uuid = old
        self.sb.rotate_history(old)
        self.sb.current = new_uuid()
        self.need_rotate = False
        log.info("new data generation", extra=kv(current=f"{self.sb.current:016X}", previous=f"{old:016X}"))

    def _apply(self, offset: int, data: Any, length: int, fua: bool, done: Done, op: str) -> None:
        def send(link: Link, wid: int) -> None:
            if op == "write":
                link.send_write(wid, offset, data, fua)
            else:
                link.send_zero(wid, offset, length, fua)

        def write_local() -> None:
            if op == "write":
                iozero.pwrite_all(self.fd, data, offset)
            else:
                iozero.zero_range(self.fd, offset, length, punch=op == "trim")

        exts = tuple(extents(offset, length))
        p = Pending(offset, length, done, set(), True, t0=time.perf_counter(), op=op, exts=exts)
        wid = self._start(p, send, write_local)
        if wid is None:
            return
        self.counters["writes" if op == "write" else ("trims" if op == "trim" else "zeroes")] += 1
        if fua and p.local_ok:
            p.local_done = False
            self.spawn(self._local_sync(wid))
        self._progress(wid, p)

    def batching(self) -> bool:
        """Whether client writes may go as write batches now: the plain case only (Primary,
        disk attached, nothing held, no generation to start, every replicating peer on wire
        version 4). Anything else takes the per-request path, which knows every case."""
        if self.role != PRIMARY or self.need_rotate or self.diskless() or self.gate.blocked():
            return False
        return all(link.batches for link in self.links.values() if link.replicating)

    def write_batch(self, payload: bytes, count: int, exts: tuple[int, ...], done: Done) -> bool:
        """Write a batch (``fastpath.scan``) as one: one frame per peer, one local call, one
        acknowledgement. False (nothing done) when the per-request path must take its writes:
        :meth:`batching` says no, or an extent is not in the activity log yet."""
        if not self.batching() or not self.al.covers(exts):
            return False

        def send(link: Link, wid: int) -> None:
            link.send_writes(wid, payload)

        data = len(payload) - fastpath.HEAD.size - fastpath.ENTRY.size * count
        p = Pending(0, data, done, set(), True, t0=time.perf_counter(), batch=payload, exts=exts, count=count)
        wid = self._start(p, send, lambda: fastpath.apply(self.fd, payload, self.size))
        if wid is None:
            return True
        self.counters["writes"] += count
        self.counters["write_batches"] += 1
        self._progress(wid, p)
        return True

    def _start(self, p: Pending, send: Callable[[Link, int], None], write_local: Callable[[], object]) -> int | None:
        """A client write's first half: a new id, sent to every replicating peer first, then
        written locally, then kept until its peers answer (blocks marked for every peer it was
        not sent to, its activity-log extents busy). Returns the id; None when it was answered
        at once: EIO when it cannot be done anywhere, or — with ``onIoError: pass-on`` — when
        the local write failed, its ranges then marked out of sync with every peer (those it
        reached hold data this disk may not; a resync from here makes them agree again)."""
        wid = self.next_id
        self.next_id += 1
        targets = [link for link in self.links.values() if link.replicating]
        for link in targets:
            send(link, wid)
        local_ok = not self.diskless()
        if local_ok:
            try:
                write_local()
            except OSError as exc:
                self.io_error(p.op, exc)
                if not self.detach(f"{p.op} error: {exc}"):
                    for pid in self.bitmaps:
                        self._mark(pid, p.ranges())
                    p.done(EIO)
                    return None
                local_ok = False
        if not local_ok and not targets:
            p.done(EIO)
            return None
        p.peers = {link.node_id for link in targets}
        p.local_ok, p.wait_peers = local_ok, self.protocol != "A" or not local_ok
        for pid in self.bitmaps:
            if pid not in p.peers:
                self._mark(pid, p.ranges())
        self.al.begin(p.exts)
        self.pending[wid] = p
        return wid

    def _mark(self, pid: int, ranges: Iterable[tuple[int, int]]) -> None:
        """The blocks of ``ranges`` are out of sync with peer ``pid``."""
        bm = self.bitmaps[pid]
        for offset, length in ranges:
            bm.mark(offset, length)
        self.bm_dirty.add(pid)

    async def _local_sync(self, wid: int) -> None:
        ok = not self.diskless()
        if ok:
            try:
                await asyncio.to_thread(os.fdatasync, self.fd)
            except OSError as exc:
                self.io_error("fdatasync", exc)
                self.detach(f"fdatasync error: {exc}", always=True)
                ok = False
        p = self.pending.get(wid) or self.flushes.get(wid)
        if p is not None:
            p.local_done = True
            if not ok:
                p.local_ok, p.wait_peers = False, True
            self._progress(wid, p)

    def _progress(self, wid: int, p: Pending) -> None:
        if p.local_done and (not p.wait_peers or not p.peers):
            self._answer(p, 0 if p.local_ok or p.acked_by else EIO)
        if p.answered and not p.peers:
            if p.op == "flush":
                self.flushes.pop(wid, None)
            else:
                self.pending.pop(wid, None)
                self.al.end(p.exts)

    def flush(self, done: Done) -> None:
        err = self.check_io()
        if err:
            done(err)
            return
        if self.gate.blocked():
            self.gate.queue(lambda: self.flush(done), done)
            return
        self.counters["flushes"] += 1
        fid = self.next_id
        self.next_id += 1
        targets = (
            [lk for lk in self.links.values() if lk.replicating] if self.protocol != "A" or self.diskless() else []
        )
        for link in targets:
            link.send_flush(fid)
        p = Pending(
            0,
            0,
            done,
            {link.node_id for link in targets},
            True,
            local_done=False,
            t0=time.perf_counter(),
            op="flush",
        )
        self.flushes[fid] = p
        self.spawn(self._local_sync(fid))

    # ---- peer events ----------------------------------------------------------------------
    def settled_id(self) -> int:
        """Every write with an id up to this one was acknowledged by every peer it was sent to
        (or its blocks marked for a peer that was lost). Ids grow and ``pending`` (and the
        serve loop's ``flight``) keep them in order, so the oldest write still pending bounds it."""
        oldest = next(iter(self.pending), self.next_id)
        if self.flight is not None and len(self.flight):
            oldest = min(oldest, self.flight.oldest())
        return oldest - 1

    # ---- the serve loop's writes in flight (primary.py) ------------------------------------
    def flight_extents(self) -> frozenset[int]:
        """Activity-log extents with serve-loop writes in flight (busy, as ``al.begin`` keeps
        the engine's own)."""
        return frozenset(self.flight.extents()) if self.flight is not None and len(self.flight) else frozenset()

    def in_flight(self) -> int:
        return len(self.pending) + (len(self.flight) if self.flight is not None else 0)

    def drain_flight(self) -> list[int]:
        """Hand the serve loop's writes in flight to the per-request bookkeeping (``pending``),
        where every rare case is handled: a lost peer, a NACK, held acknowledgements, a failed
        local write. Returns their ids."""
        if self.flight is None or not len(self.flight):
            return []
        new: dict[int, Pending] = {}
        bits = self.peer_bits.items()
        for wid, payload, cookies, conn, exts, waiting, acked, answered, local_ok, t0 in self.flight.drain():
            n = len(cookies) // 8
            data = len(payload) - fastpath.HEAD.size - fastpath.ENTRY.size * n
            new[wid] = Pending(
                0,
                data,
                conn.batch_done(cookies, n),
                {pid for pid, bit in bits if waiting & bit},
                self.protocol != "A" or not local_ok,
                local_ok=bool(local_ok),
                acked_by={pid for pid, bit in bits if acked & bit},
                answered=bool(answered),
                t0=t0,  # the serve loop's clock is CLOCK_MONOTONIC, as time.perf_counter's here
                batch=payload,
                exts=exts,
                count=n,
            )
            self.al.begin(exts)
        self.pending = dict(sorted((self.pending | new).items()))
        for wid, p in new.items():
            if not p.peers:
                self._progress(wid, p)
        return list(new)

    def peer_acks(self, node_id: int, ids: list[int]) -> None:
        """A peer acknowledged these writes (serve-loop writes answered in compiled code)."""
        if self.flight is not None and len(self.flight):
            if self.gate.acks_blocked():
                self.drain_flight()
            else:
                answers, ids = self.flight.ack(self.peer_bits[node_id], ids, math.inf)
                for conn, replies, n in answers:
                    conn.batch_answered(replies, n)
        for wid in ids:
            self._ack_pending(node_id, wid)

    def local_write_failed(self, wid: int, err: int) -> None:
        """A serve-loop batch's local write failed (it went to every peer first): as ``_start``
        handles it (detach and keep it for the peers, or mark its blocks and fail it)."""
        self.drain_flight()
        p = self.pending.get(wid)
        if p is None:
            return
        exc = OSError(err, os.strerror(err))
        self.io_error(p.op, exc)
        if self.detach(f"{p.op} error: {exc}"):
            p.local_ok, p.wait_peers = False, True
            self._progress(wid, p)
            return
        for pid in self.bitmaps:
            self._mark(pid, p.ranges())
        del self.pending[wid]
        self.al.end(p.exts)
        p.done(EIO)

    def peer_ack(self, node_id: int, wid: int, flush: bool = False) -> None:
        if not flush and wid not in self.pending and self.flight is not None and len(self.flight):
            self.peer_acks(node_id, [wid])
        else:
            self._ack_pending(node_id, wid, flush)

    def _ack_pending(self, node_id: int, wid: int, flush: bool = False) -> None:
        p = (self.flushes if flush else self.pending).get(wid)
        if p is not None and node_id in p.peers:
            p.peers.discard(node_id)
            p.acked_by.add(node_id)
            self._progress(wid, p)

    def peer_nack(self, node_id: int, wid: int, flush: bool) -> None:
        """The peer could not write (its disk failed): the block is out of sync with it."""
        self.drain_flight()
        p = (self.flushes if flush else self.pending).get(wid)
        if p is not None and node_id in p.peers:
            if not flush:
                self._mark(node_id, p.ranges())
            p.peers.discard(node_id)
            self._progress(wid, p)

    def peer_lost(self, node_id: int, was_replicating: bool) -> None:
        """A link went down: its unacknowledged writes go to its bitmap; fence it before the next ack."""
        self.drain_flight()
        for rid, (nid, cb) in list(self.remote_reads.items()):
            if nid == node_id:
                del self.remote_reads[rid]
                cb(EIO, b"")
        for p in list(self.pending.values()):
            if node_id in p.peers:
                self._mark(node_id, p.ranges())
        if self.role == PRIMARY:
            self.need_rotate = True
            if was_replicating and self.cfg.fencing == "resource-only" and self.fence is not None:
                self.hold(
                    f"fence:{node_id}",
                    f"fencing node {node_id}: writes held until its disk is Outdated",
                    acks=True,
                )
                self.fence(node_id)
        for wid, p in list(self.pending.items()) + list(self.flushes.items()):
            if node_id in p.peers:
                p.peers.discard(node_id)
                self._progress(wid, p)

    def peer_established(self, node_id: int) -> None:
        self.release(f"fence:{node_id}")

    def io_error(self, what: str, exc: BaseException | None) -> None:
        self.counters["io_errors"] += 1
        self.m.io_errors.inc()
        log.error("I/O error on the backing disk", extra=kv(op=what, error=str(exc)))
        self.events.publish("io-error", op=what, error=str(exc))

    # ---- secondary side -------------------------------------------------------------------
    def apply_remote(self, offset: int, data: bytes | memoryview | None, length: int, punch: bool = False) -> None:
        """Write what a peer sent; OSError when this disk cannot (Diskless, or it failed: detached)."""
        if offset + length > self.size:
            raise ValueError(f"replicated write at {offset}+{length} beyond the volume ({self.size})")
        if self.diskless():
            raise OSError(EIO, "Diskless")
        self._cover(extents(offset, length))
        if data is not None:
            iozero.pwrite_all(self.fd, data, offset)
        else:
            iozero.zero_range(self.fd, offset, length, punch=punch)

    def apply_batch(self, payload: bytes | memoryview) -> tuple[int, ...]:
        """Write a peer's write batch; returns its activity-log extents. ValueError when it is
        malformed (nothing written), OSError when this disk cannot (Diskless, or it failed)."""
        exts = fastpath.check(payload, self.size, AL_EXTENT)  # a malformed batch is refused, Diskless or not
        if self.diskless():
            raise OSError(EIO, "Diskless")
        self._cover(exts)
        fastpath.apply(self.fd, payload, self.size)
        return exts

    def _cover(self, exts: Iterable[int]) -> None:
        """A replicated write lands only in extents the activity log lists, persisted first (as
        on the Primary): a Secondary acknowledges writes that are only in the page cache, and
        after its node restarts without a clean stop it resyncs these extents (``load``).
        Blocking (one small O_DSYNC write; the event loop has nothing else to do for this
        write), and only for the first write to an extent."""
        if self.al.covers(exts):
            return
        if self.al.add(set(exts), busy=self.flight_extents()):
            self.persist_sync()  # an extent leaves the log only once its data is durable
        self.backing.store.save_al(self.al.active())

    async def grow(self, new_size: int | None) -> int:
        """Grow into a larger backing device (metadata moves, the new area is zeroed)."""
        async with self._md_lock:
            size = await asyncio.to_thread(disk.grow, self.backing, self.sb, new_size)
        if size != self.size:
            self.size = size
            for pid, bm in list(self.bitmaps.items()):
                self.bitmaps[pid] = bm.resize(size // 4096)
            self.events.publish("resized", size=size)
        return size

    def adopt_generation(self, current: int, history: list[int]) -> None:
        """Take a sync source's (or the Primary's) identifiers: this disk now holds that generation."""
        if current == self.sb.current:
            return
        self.sb.current = current
        hist = [int(h) for h in history][:2]
        self.sb.history = hist + [0] * (2 - len(hist))
        self.spawn(self.persist_quietly())

    # ---- status ---------------------------------------------------------------------------
    def day0(self) -> bool:
        return self.sb.current == DAY0

    def day0_everywhere(self) -> bool | None:
        """Never written on any replica (fsinit's test); None while a peer's identifiers are unknown."""
        if not self.day0():
            return False
        seen = [lk.status().get("peer_current_uuid") for lk in self.links.values()]
        if any(u is None for u in seen):
            return None
        return all(int(u, 16) == DAY0 for u in seen)

    def status(self) -> dict[str, Any]:
        return {
            "resource": self.cfg.resource,
            "node_id": self.cfg.node_id,
            "role": self.role,
            "disk": self.sb.disk_state,
            "size": self.size,
            "protocol": self.protocol,
            "current_uuid": f"{self.sb.current:016X}",
            "history_uuids": [f"{h:016X}" for h in self.sb.history],
            "day0": self.day0(),
            "day0_everywhere": self.day0_everywhere(),
            "suspended": self.gate.reasons(),
            "held_requests": self.gate.held_count(),
            "in_flight": self.in_flight(),
            "deadline": self.gate.deadline_status(),
            "nbd_clients": self.nbd_clients,
            "write_path": "compiled" if fastpath.COMPILED else "python",
            "counters": dict(self.counters),
            "serve_loop": {"compiled": self.flight is not None, "stops": dict(self.serve_stops)},
            "peers": [link.status() for link in self.links.values()],
        }

    def bitmap_uuid(self, node_id: int) -> int:
        return self.sb.slot(node_id)[1].bitmap_uuid

    def is_uptodate(self) -> bool:
        return self.sb.disk_state == UP_TO_DATE
