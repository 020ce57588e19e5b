"""Online verify: compare every block with a peer by digest; mark differing blocks out of sync.

Blocks written while verify runs may be reported as differing (as in DRBD); they are only
marked, and the next resync (disconnect/connect) sends them if they really differ.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from hastack_blockrepl import wire as W
from hastack_blockrepl.resync import WINDOW, RateLimiter, digest
from hastack_common.logs import kv

if TYPE_CHECKING:
    from hastack_blockrepl.engine import Engine
    from hastack_blockrepl.peer import PeerLink

log = logging.getLogger(__name__)
CHUNK = 128 << 10


def start_verify(engine: Engine, link: PeerLink) -> None:
    if link.verify.get("running"):
        return
    link.verify = {"running": True, "total_bytes": engine.size, "done_bytes": 0, "out_of_sync_bytes": 0}
    engine.spawn(_run(engine, link))


def on_result(engine: Engine, link: PeerLink, offset: int, length: int, same: bool) -> None:
    v: dict[str, Any] = link.verify
    v["done_bytes"] = v.get("done_bytes", 0) + length
    v["_outstanding"] = v.get("_outstanding", 1) - 1
    if not same:
        v["out_of_sync_bytes"] = v.get("out_of_sync_bytes", 0) + length
        engine.bitmaps[link.node_id].mark(offset, length)
        engine.bm_dirty.add(link.node_id)
    sem = v.get("_sem")
    if sem is not None:
        sem.release()


async def _run(engine: Engine, link: PeerLink) -> None:
    v = link.verify
    sem = asyncio.Semaphore(WINDOW)
    v["_sem"], v["_outstanding"] = sem, 0
    limiter = RateLimiter(engine.cfg.sync.rate)
    proto = link.proto
    try:
        for off in range(0, engine.size, CHUNK):
            await sem.acquire()
            length = min(CHUNK, engine.size - off)
            await limiter.take(length)
            if link.proto is not proto or proto is None:
                v["result"] = "aborted: connection lost"
                return
            v["_outstanding"] += 1
            proto.send(proto.enc.encode(W.OV_REQ, digest(engine.read_raw(off, length)), id=length, offset=off))
        for _ in range(200 * 60):
            if v["_outstanding"] <= 0 or link.proto is not proto:
                break
            await asyncio.sleep(0.005)
        v["result"] = "done" if v["_outstanding"] <= 0 else "aborted: connection lost"
    finally:
        v["running"] = False
        v.pop("_sem", None)
        v.pop("_outstanding", None)
        log.info("online verify finished", extra=kv(peer=link.node_id, out_of_sync=v.get("out_of_sync_bytes")))
        engine.events.publish(
            "verify-finished",
            peer=link.node_id,
            out_of_sync_bytes=v.get("out_of_sync_bytes"),
            result=v.get("result"),
        )
