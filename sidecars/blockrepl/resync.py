"""Resync and online verify: checksum-based, rate-limited, driven by the SyncTarget.

The SyncTarget walks the sync set (union of both sides' bitmaps, or every block for a full
sync) in runs of up to 128 KiB: it sends the SHA-256 of its own copy, the SyncSource answers
"same" (nothing sent) or with its data. Both use the one ordered link, so a client write
that reaches the target after a resync answer always lands after it. The source clears its
bitmap only for runs the target confirmed applied (RS_ACK), so an interrupted resync resumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hastack_blockrepl import wire as W
from hastack_blockrepl.bitmap import Bitmap
from hastack_blockrepl.meta import UP_TO_DATE
from hastack_common.config_blockrepl import BLOCK
from hastack_common.logs import kv

if TYPE_CHECKING:
    from hastack_blockrepl.peer import PeerLink

log = logging.getLogger(__name__)
PARKED = "parked while this replica resyncs from node"

RUN_BLOCKS = 32  # 128 KiB per request
WINDOW = 16  # requests in flight


def digest(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


class RateLimiter:
    """Token bucket in bytes/s with a one-second burst; clock injected for tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(rate, 1.0)
        self._now = clock
        self.tokens = 0.0
        self.last = self._now()

    def delay(self, nbytes: int) -> float:
        """Take ``nbytes``; return how long to wait before using them."""
        now = self._now()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def take(self, nbytes: int) -> None:
        d = self.delay(nbytes)
        if d > 0:
            await asyncio.sleep(d)


@dataclass
class Progress:
    total: int = 0  # bytes in the sync set
    done: int = 0
    sent: int = 0  # bytes that had to travel (differing blocks)
    started: float = field(default_factory=time.monotonic)
    rate: float = 0.0  # bytes/s, smoothed
    _last: float = field(default_factory=time.monotonic)
    _last_done: int = 0

    def add(self, nbytes: int, sent: bool) -> None:
        self.done += nbytes
        if sent:
            self.sent += nbytes
        now = time.monotonic()
        if now - self._last >= 0.5:
            inst = (self.done - self._last_done) / (now - self._last)
            self.rate = inst if not self.rate else 0.5 * self.rate + 0.5 * inst
            self._last, self._last_done = now, self.done

    def status(self) -> dict[str, float | int | None]:
        pct = 100.0 if not self.total else round(100.0 * self.done / self.total, 1)
        elapsed = time.monotonic() - self.started
        rate = self.rate or (self.done / elapsed if elapsed > 0 else 0.0)
        eta = None if rate <= 0 else round((self.total - self.done) / rate, 1)
        return {
            "percent": pct,
            "total_bytes": self.total,
            "done_bytes": self.done,
            "sent_bytes": self.sent,
            "rate_bytes_per_second": round(rate),
            "eta_seconds": eta,
        }


def sync_set(nbits: int, mine: Bitmap, theirs: Bitmap | None, full: bool) -> Bitmap:
    s = Bitmap(nbits)
    if full:
        s.set_all()
        return s
    s.merge(mine)
    if theirs is not None:
        s.merge(theirs)
    return s


def run_span(first: int, n: int, size: int) -> tuple[int, int]:
    off = first * BLOCK
    return off, min(n * BLOCK, size - off)


# ---- the protocol, driven by the SyncTarget (PeerLink hands its frames here) ----
def on_rs_req(link: PeerLink, f: W.Frame) -> None:
    assert link.proto is not None
    if link.repl != "SyncSource":
        raise W.WireError("resync request while not SyncSource")
    data = link.engine.read_raw(f.offset, f.id)
    if digest(data) == bytes(f.payload):
        link.proto.send(link.proto.enc.encode(W.RS_SAME, id=f.id, offset=f.offset))
    else:
        link.proto.send(link.proto.enc.encode(W.RS_DATA, data, id=f.id, offset=f.offset))
        if link.progress:
            link.progress.sent += f.id


def on_rs_done(link: PeerLink, msg: dict[str, Any]) -> None:
    e = link.engine
    if link.repl == "SyncSource":  # the target has every block: its generation becomes ours
        _, slot = e.sb.slot(link.node_id)
        e.sb.rotate_history(slot.bitmap_uuid)
        slot.bitmap_uuid = 0
        e.bitmaps[link.node_id].clear_all()
        e.bm_dirty.add(link.node_id)
        link.repl, link.peer_disk = "Established", UP_TO_DATE
        e.spawn(e.persist_quietly())
        assert link.proto is not None
        link.proto.send(link.proto.enc.json(W.RS_DONE, {"current": e.sb.current, "history": e.sb.history}))
        sync_finished(link)
    elif link.repl == "SyncTarget":
        e.adopt_generation(int(msg["current"]), msg.get("history", []))
        _, slot = e.sb.slot(link.node_id)
        slot.bitmap_uuid = 0
        e.bitmaps[link.node_id].clear_all()
        e.bm_dirty.add(link.node_id)
        e.sb.disk_state = UP_TO_DATE
        link.repl = "Established"
        e.crashed_primary = False
        e.spawn(e.persist_quietly())
        e.m.update(e)
        e.announce()
        sync_finished(link)
        unpark(link)


def sync_finished(link: PeerLink) -> None:
    st = link.progress.status() if link.progress else {}
    log.info("resync finished", extra=kv(peer=link.node_id, **{k: v for k, v in st.items() if v is not None}))
    link.engine.events.publish("sync-finished", peer=link.node_id, **st)
    link.engine.peer_established(link.node_id)


def park_diverged(link: PeerLink) -> None:
    """This replica is about to take the SyncSource's data. A link to a Secondary that holds
    another data generation (3 replicas: it followed the branch that lost a split brain) must not
    stay Established across that: it would claim UpToDate on both ends over different data.
    Such links go StandAlone until the resync ends, then decide afresh."""
    src = link.peer_state or {}
    for other in link.node.links.values():
        if other is link or other.proto is None or other.peer_role == "Primary" or other.conn == "StandAlone":
            continue
        cur = (other.peer_state or {}).get("current")
        if cur is not None and int(cur) & ~1 == int(src.get("current", 0)) & ~1:
            continue
        log.warning("link parked during resync", extra=kv(peer=other.node_id, source=link.node_id))
        other.standalone(f"{PARKED} {link.node_id} (node {other.node_id} may hold another data generation)")


def unpark(link: PeerLink) -> None:
    for other in link.node.links.values():
        if other.conn == "StandAlone" and other.standalone_reason.startswith(PARKED):
            other.reconnect()


async def run_target(link: PeerLink, bits: Bitmap) -> None:
    park_diverged(link)
    try:
        await _run_target(link, bits)
    finally:
        if link.repl != "SyncTarget" or link.proto is None:  # done, or interrupted: decide afresh
            unpark(link)


async def _run_target(link: PeerLink, bits: Bitmap) -> None:
    e = link.engine
    await e.persist()  # Inconsistent is on disk before the first block changes
    link.progress = Progress(total=bits.count() * 4096)
    link.rs_window, link.rs_outstanding = asyncio.Semaphore(WINDOW), 0  # fresh for this connection
    limiter = RateLimiter(e.cfg.sync.rate)
    proto = link.proto
    for first, n in list(bits.runs(max_bits=32)):
        off, length = run_span(first, n, e.size)
        await link.rs_window.acquire()
        await limiter.take(length)
        if link.proto is not proto or proto is None:
            return
        try:
            mine = digest(e.read_raw(off, length))
        except OSError as exc:
            disk_failed(link, "resync read", exc)
            return
        link.rs_outstanding += 1
        proto.send(proto.enc.encode(W.RS_REQ, mine, id=length, offset=off))
    for _ in range(WINDOW):  # every answer is in once the whole window is free again
        await link.rs_window.acquire()
    if link.proto is proto and proto is not None:
        proto.send(proto.enc.json(W.RS_DONE, {}))


def disk_failed(link: PeerLink, what: str, exc: OSError) -> None:
    """The SyncTarget's own disk failed under the resync: it detaches (whatever ``onIoError``
    says: there is no client to pass the error to, and a kept disk would fail the resync again
    at every reconnect) and the connection closes; the replica stays out of the sync."""
    e = link.engine
    if not e.diskless():
        e.io_error(what, exc)
        e.detach(f"{what} error: {exc}", always=True)
    if link.proto is not None:
        link.proto.abort(f"{what} failed on this replica's disk: {exc}")


def on_rs_reply(link: PeerLink, f: W.Frame) -> None:
    e = link.engine
    if link.repl != "SyncTarget":
        raise W.WireError("resync data while not SyncTarget")
    if f.type == W.RS_DATA:
        if len(f.payload) != f.id:
            raise W.WireError("resync data length mismatch")
        try:
            e.apply_remote(f.offset, f.payload, f.id)
        except OSError as exc:
            disk_failed(link, "resync write", exc)
            return
    e.bitmaps[link.node_id].clear(f.offset, f.id)
    e.bm_dirty.add(link.node_id)
    assert link.proto is not None
    link.proto.send(link.proto.enc.encode(W.RS_ACK, id=f.id, offset=f.offset))
    if link.progress:
        link.progress.add(f.id, f.type == W.RS_DATA)
    e.m.resync_bytes.labels(e.cfg.resource, str(link.node_id)).inc(f.id)
    link.rs_outstanding -= 1
    link.rs_window.release()
