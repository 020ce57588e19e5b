"""The Primary's serve loop: a client's plain writes and its peers' acknowledgements without an
event-loop turn (docs/blockrepl.md, "The Primary's serve loop").

After the NBD frontend handled a socket read, and only in the plain case — Primary, nothing
held, the heartbeat deadline not lapsed, every configured peer Established and UpToDate on
wire version 6 with nothing queued to it, nothing queued to the client — the compiled
``Flight.serve`` takes over the client's socket and every peer's replication socket (their
transports stop reading meanwhile). It takes runs of plain writes whose extents are in the
activity log as write batches (one WRITES frame to every peer, then the local writes, as
``Engine.write_batch``), tracks them in the engine's ``flight``, takes the peers'
acknowledgement frames and answers a batch once every peer acknowledged it (protocol A: once
written locally). It hands back, with every buffer position and sequence number as it left
them, at the first thing it does not take (then the Python paths take it from there), when
the event loop has other work, or after ``SERVE_BUDGET``.

The engine's bookkeeping covers both: ``settled_id``, the activity log's busy extents, status
and metrics read the flight too, and every rare case (a lost peer, a NACK, held
acknowledgements, a failed local write) first hands the flight's writes to ``pending``
(``Engine.drain_flight``), where the per-request code handles them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import TYPE_CHECKING

from hastack_blockrepl import fastpath
from hastack_blockrepl import nbdproto as P
from hastack_blockrepl import wire as W
from hastack_blockrepl.engine import PRIMARY
from hastack_blockrepl.meta import UP_TO_DATE
from hastack_blockrepl.peer import PeerLink, loop_poll_fd, serve_slack
from hastack_common.config_blockrepl import AL_EXTENT
from hastack_common.logs import kv

if TYPE_CHECKING:
    from hastack_blockrepl.nbd import NbdConnection

log = logging.getLogger(__name__)
SERVE_BUDGET = 0.002  # seconds the loop may keep the event loop waiting at most
SERVE_BATCHES = 256
# writes per WRITES frame at most (a longer run goes as near-equal frames): with a client's
# window of 16 in one frame the client, this replica and its peers take turns; in frames of
# up to 8, each peer acknowledges a frame once written and this replica answers it while the
# peers write the next (docs/blockrepl.md, "Pipelining"; the environment variable: A/B runs).
# Not under protocol A, whose answers wait for no peer.
SERVE_SPLIT = int(os.environ.get("HASTACK_BLOCKREPL_SERVE_SPLIT", "8"))
NO_PENDING = (1 << 64) - 1
CONTINUE = ("frame", "foreign")  # a peer's frame the Python paths took: the loop may go on
# test-only: the loop answers writes once written locally, before their peers acknowledged them
# (protocol A's promise under any protocol), so that the safety test can show it catches that
ANSWER_EARLY = os.environ.get("HASTACK_BLOCKREPL_TEST_ANSWER_EARLY") == "1"


def links_to_serve(conn: NbdConnection) -> list[PeerLink] | None:
    """The peer links the loop would serve, or None when it may not run now."""
    e = conn.engine
    if e.flight is None or e.role != PRIMARY or not e.batching() or e.gate.acks_blocked() or e.congested():
        return None
    if e.in_read() or conn.closed or conn.closing or conn.paused or conn.out or conn.rx.big is not None:
        return None
    t = conn.transport
    if t is None or t.is_closing() or t.get_write_buffer_size() or conn.in_flight >= conn.max_in_flight:
        return None
    links = [link for link in e.links.values() if isinstance(link, PeerLink)]
    if not links or len(links) != len(e.links):
        return None
    for link in links:
        proto = link.proto
        if (
            proto is None
            or link.repl != "Established"
            or link.peer_disk != UP_TO_DATE
            or proto.version < W.VERSION_SETTLED
            or proto.q is None
            or not proto.q.empty()
            or proto.flush_scheduled
            or proto.transport is None
            or proto.transport.is_closing()
            or proto.dec.rx.big is not None
        ):
            return None
    return links


def serve_read(conn: NbdConnection) -> None:
    """Handle what a socket read brought: by the serve loop while the plain case holds (waiting
    for more for at most ``SERVE_BUDGET`` in all, and not at all while callbacks are ready or a
    timer is due), by the Python paths otherwise and for whatever it hands back."""
    loop = conn.engine.loop
    until = loop.time() + SERVE_BUDGET
    while True:
        links = links_to_serve(conn) if _plain_write_first(conn) else None
        if links is None:
            conn.process()
            return
        # with callbacks ready, a timer due or the budget spent: one pass over what is here
        # (the loop takes it, and waits for nothing), which the Python paths would take slower
        slack = serve_slack(loop, SERVE_BUDGET, _served_transports(conn, links))
        why = serve(conn, links, max(0.0, min(until - loop.time(), slack)))
        if why == "error":
            return
        conn.process()  # a request the loop did not take, if any
        for link in links:
            proto = link.proto
            if proto is not None and proto.dec.rx.start < proto.dec.rx.end:
                proto.handle_read()  # the frame that stopped it, if any
        if why not in CONTINUE:
            return


def _served_transports(conn: NbdConnection, links: list[PeerLink]) -> list[asyncio.Transport]:
    """The transports whose sockets the loop reads itself: the client's and its peers'."""
    peers = [link.proto.transport for link in links if link.proto is not None and link.proto.transport is not None]
    return [t for t in (conn.transport, *peers) if t is not None]


def _plain_write_first(conn: NbdConnection) -> bool:
    """Whether the client's buffer starts with a write the loop takes (or nothing yet): a read,
    a flush or a large write is the Python paths' at once (entering the loop for it would only
    add the loop's cost to every such request)."""
    rx = conn.rx
    if rx.end - rx.start < P.REQ.size:
        return True
    _, flags, cmd, _, _, length = P.REQ.unpack_from(rx.buf, rx.start)
    return cmd == P.CMD_WRITE and flags == 0 and 0 < length <= fastpath.MAX_WRITE


def serve(conn: NbdConnection, links: list[PeerLink], budget: float) -> str:
    """One call of the compiled loop; the state it hands back is put where the Python paths
    keep it. Returns why it stopped."""
    e, rx, t = conn.engine, conn.rx, conn.transport
    flight = e.flight
    assert flight is not None and t is not None
    protos = [link.proto for link in links]
    peers = []
    for link, proto in zip(links, protos, strict=True):
        assert proto is not None and proto.q is not None
        drx = proto.dec.rx
        peers.append(
            (proto.q.sock.fileno(), drx.buf, drx.start, drx.end, proto.dec.seq, proto.dec.mac, proto.enc.seq,
             proto.enc.mac, e.peer_bits[link.node_id])
        )  # fmt: skip
    transports = _served_transports(conn, links)
    deadline = e.gate.deadline_at if e.gate.deadline_at is not None else math.inf
    for tr in transports:
        tr.pause_reading()
    try:
        out = flight.serve(
            t.get_extra_info("socket").fileno(), rx.buf, rx.start, rx.end, conn, conn.structured,
            conn.max_in_flight, tuple(peers), e.size, e.fd, e.al.table(), AL_EXTENT, fastpath.MAX_WRITE,
            SERVE_SPLIT if e.protocol != "A" else fastpath.MAX_COUNT, fastpath.MAX_BYTES, conn.in_flight, e.next_id,
            next(iter(e.pending), NO_PENDING), W.ACK_RECVS, W.ACK_WRITES, e.protocol == "A" or ANSWER_EARLY,
            deadline, loop_poll_fd(e.loop), budget, SERVE_BATCHES,
        )  # fmt: skip
    except Exception as exc:  # an internal error (memory): what the loop did is not known here
        for tr in transports:
            tr.resume_reading()
        _failed(conn, links, exc)
        return "error"
    for tr in transports:
        tr.resume_reading()
    rx.start, rx.end, e.next_id, submitted, answered, batches, nbd_unsent, others, peers_out, failed, why = out
    conn.in_flight += submitted - answered
    e.counters["writes"] += submitted
    e.counters["write_batches"] += batches
    e.counters["served_batches"] += batches
    if nbd_unsent:
        t.write(nbd_unsent)  # (nothing was queued to the client: the order holds)
    now = e.loop.time()
    for link, proto, state in zip(links, protos, peers_out, strict=True):
        assert proto is not None
        start, end, dseq, eseq, settled, unsent, received, _ = state
        proto.dec.rx.start, proto.dec.rx.end, proto.dec.seq, proto.enc.seq = start, end, dseq, eseq
        if settled >= 0:
            link.settled_sent = settled
        if received:
            link.last_rx = now
        if unsent:
            proto.send([unsent], now=True)  # (nothing else was queued to the peer: the order holds)
    for other, replies, n in others:
        other.batch_answered(replies, n)
    for link, out in zip(links, peers_out, strict=True):
        if out[7]:
            e.peer_acks(link.node_id, out[7])  # acknowledgements of the engine's own writes
    if failed is not None:
        e.local_write_failed(*failed)
    if e.gate.acks_blocked():  # the deadline lapsed in the loop: answers wait in the engine's bookkeeping
        e.drain_flight()
    e.serve_stops[why] = e.serve_stops.get(why, 0) + 1
    return str(why)


def _failed(conn: NbdConnection, links: list[PeerLink], exc: Exception) -> None:
    """The loop raised: its frames' sequence numbers and the client's buffer are not known, so
    the connections it served are closed (peers resync what was in flight, nothing was
    acknowledged that is not written everywhere)."""
    e = conn.engine
    log.error("the serve loop failed: closing the connections it served", extra=kv(error=repr(exc)))
    ids = e.drain_flight()
    e.next_id = max([e.next_id, *(wid + 1 for wid in ids)])
    for link in links:
        if link.proto is not None:
            link.proto.abort(f"internal error in the serve loop: {exc!r}")
    conn.close()
