"""A Secondary's compiled steady state (``_fast.serve_writes``, peer.PeerLink.serve) on a real
socket pair: it writes the WRITES frames it reads, acknowledges them in frames the Primary's
parser accepts (in sequence, authenticated), and hands back — with the receive buffer, both
sequence numbers and what it took — at every point where the event loop or the frame parser
must act: a frame it does not take, the event loop's own descriptor readable, its budget, a
closed connection, a failed write, a full socket."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from harness.sockets import received
from hastack_blockrepl import fastpath as F
from hastack_blockrepl import wire as W
from hastack_blockrepl.peer import serve_slack
from hastack_blockrepl.rxbuf import SMALL
from hastack_common.config_blockrepl import AL_EXTENT

pytestmark = pytest.mark.skipif(F.serve_writes is None, reason="the compiled extension is not built")
SIZE = 4 * AL_EXTENT
FROM_PRIMARY, TO_PRIMARY = bytes(range(32)), bytes(range(1, 33))


def batch(writes: list[tuple[int, int]], fill: int) -> bytes:
    head = F.HEAD.pack(len(writes), 0) + b"".join(F.ENTRY.pack(o, n, 0) for o, n in writes)
    return head + b"".join(bytes([(fill + i) % 251 + 1]) * n for i, (_, n) in enumerate(writes))


class Secondary:
    """The receiving end: a disk, a receive buffer, the decoder and encoder of a link."""

    def __init__(self, d: str, sock: socket.socket, mode: int = os.O_RDWR) -> None:
        path = os.path.join(d, "disk")
        with open(path, "wb") as f:
            f.truncate(SIZE)
        self.fd = os.open(path, mode)
        self.sock, self.dec, self.enc = sock, W.Decoder(FROM_PRIMARY, version=6), W.Encoder(TO_PRIMARY, 6)
        self.table = {x: 0 for x in range(SIZE // AL_EXTENT)}

    def serve(
        self, watch: int = -1, budget: float = 0.5, max_frames: int = 256, each: bool = True
    ) -> dict[str, object]:
        rx = self.dec.rx
        rx.start, rx.end, self.dec.seq, self.enc.seq, ids, exts, settled, failed, unsent, why = F.serve_writes(
            self.sock.fileno(), rx.buf, rx.start, rx.end, W.WRITES, self.dec.seq, self.dec.mac, SIZE, self.fd,
            self.table, AL_EXTENT, W.ACK_WRITES, self.enc.seq, self.enc.mac, watch, budget, max_frames, each,
        )  # fmt: skip
        return {"ids": ids, "exts": exts, "settled": settled, "failed": failed, "unsent": unsent, "why": why}


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, str]]:
    a, b = socket.socketpair()
    with tempfile.TemporaryDirectory() as d:
        yield a, b, d
    a.close()
    b.close()


def frames(enc: W.Encoder, specs: list[tuple[int, bytes, int]]) -> bytes:
    """Frames as the Primary sends them (each carrying the id below its own as settled)."""
    return b"".join(b"".join(bytes(p) for p in enc.encode(t, data, id=wid, offset=wid - 1)) for t, data, wid in specs)


def acked(sock: socket.socket, key: bytes = TO_PRIMARY) -> list[int]:
    """The ids of the acknowledgement frames waiting on the Primary's end (all must decode)."""
    dec = W.Decoder(key, version=6)
    got = list(dec.feed(received(sock)))
    assert dec.rx.available == 0, "a partial acknowledgement frame"
    assert all(f.type == W.ACK_WRITES for f in got)
    return [i for f in got for i in W.unpack_ids(f.payload)]


def test_serve_writes_acknowledges_and_stops_at_a_frame_it_does_not_take(pair) -> None:
    primary, sock, d = pair
    sec, enc = Secondary(d, sock), W.Encoder(FROM_PRIMARY, 6)
    writes = [batch([(0, 4096), (AL_EXTENT, 512)], 1), batch([(8192, 4096)], 2), batch([(3 * AL_EXTENT, 9000)], 3)]
    primary.sendall(frames(enc, [(W.WRITES, w, 10 + i) for i, w in enumerate(writes)] + [(W.SETTLED, b"", 13)]))
    out = sec.serve()
    assert out["why"] == "frame" and out["ids"] == [10, 11, 12] and out["failed"] is None and out["settled"] == 11
    assert [tuple(x) for x in out["exts"]] == [(0, 1), (0,), (3,)]
    assert acked(primary) == [10, 11, 12]
    assert [(f.type, f.id) for f in sec.dec.frames()] == [(W.SETTLED, 13)]  # left where the parser finds it
    ref = os.path.join(d, "ref")
    with open(ref, "wb") as f:
        f.truncate(SIZE)
    rfd = os.open(ref, os.O_RDWR)
    for w in writes:
        F.py_apply(rfd, w, SIZE)
    assert os.pread(sec.fd, SIZE, 0) == os.pread(rfd, SIZE, 0)
    os.close(rfd)


@pytest.mark.parametrize(("each", "acks"), [(True, [[20], [21], [22]]), (False, [[20, 21, 22]])])
def test_each_frame_is_acknowledged_on_its_own_once_written(pair, each: bool, acks: list[list[int]]) -> None:
    """Pipelining (protocols B and C): the Primary can answer its client for one batch while the
    next is written; under A (not each) a read's worth is acknowledged in one frame."""
    primary, sock, d = pair
    sec, enc = Secondary(d, sock), W.Encoder(FROM_PRIMARY, 6)
    primary.sendall(frames(enc, [(W.WRITES, batch([(i * 4096, 4096)], i), 20 + i) for i in range(3)]))
    out = sec.serve(budget=0.05, each=each)
    assert out["ids"] == [20, 21, 22]
    dec = W.Decoder(TO_PRIMARY, version=6)
    assert [list(W.unpack_ids(f.payload)) for f in dec.feed(received(primary))] == acks


def test_a_write_batch_larger_than_a_read_is_taken_once_all_here(pair) -> None:
    primary, sock, d = pair
    sec, enc = Secondary(d, sock), W.Encoder(FROM_PRIMARY, 6)
    big = batch([(i * 4096, 4096) for i in range(24)], 7)  # 96 KiB: beyond rxbuf.BIG, within half the buffer
    data = frames(enc, [(W.WRITES, big, 5)])
    primary.sendall(data[:1000])
    out = sec.serve(budget=0.05)
    assert out["why"] == "budget" and out["ids"] == []
    primary.sendall(data[1000:])
    out = sec.serve(budget=0.5, max_frames=1)
    assert out["ids"] == [5] and acked(primary) == [5]


def test_a_frame_too_large_for_the_buffer_goes_to_the_parser(pair) -> None:
    primary, sock, d = pair
    sec, enc = Secondary(d, sock), W.Encoder(FROM_PRIMARY, 6)
    huge = batch([(i * 65536, 65536) for i in range(SMALL // 2 // 65536 + 1)], 1)
    primary.sendall(frames(enc, [(W.WRITES, huge, 5)])[:200])
    assert sec.serve(budget=0.5)["why"] == "frame"


def test_serve_returns_when_the_event_loop_has_work(pair) -> None:
    _, sock, d = pair
    r, w = os.pipe()
    os.write(w, b"x")
    try:
        assert Secondary(d, sock).serve(watch=r, budget=30)["why"] == "loop"
    finally:
        os.close(r)
        os.close(w)


def test_serve_returns_when_the_connection_ends(pair) -> None:
    primary, sock, d = pair
    primary.shutdown(socket.SHUT_WR)
    assert Secondary(d, sock).serve(budget=30)["why"] == "closed"


def test_a_failed_write_is_handed_back_unacknowledged(pair) -> None:
    primary, sock, d = pair
    sec, enc = Secondary(d, sock, os.O_RDONLY), W.Encoder(FROM_PRIMARY, 6)
    primary.sendall(frames(enc, [(W.WRITES, batch([(0, 4096)], 1), 10), (W.WRITES, batch([(0, 4096)], 2), 11)]))
    out = sec.serve()
    assert out["why"] == "failed" and out["failed"] == (10, errno.EBADF) and out["ids"] == []
    assert acked(primary) == []
    assert [f.id for f in sec.dec.frames()] == [11]


def test_an_acknowledgement_the_socket_will_not_take_is_handed_back(pair) -> None:
    primary, sock, d = pair
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"\0" * 65536)  # the Primary reads nothing: fill the way back
    except BlockingIOError:
        pass
    sec, enc = Secondary(d, sock), W.Encoder(FROM_PRIMARY, 6)
    primary.sendall(frames(enc, [(W.WRITES, batch([(0, 4096)], 1), 10)]))
    out = sec.serve()
    assert out["why"] == "blocked" and out["ids"] == [10] and out["unsent"]
    (f,) = W.Decoder(TO_PRIMARY, version=6).feed(out["unsent"])  # the whole frame, for the send queue
    assert f.type == W.ACK_WRITES and W.unpack_ids(f.payload) == (10,) and sec.enc.seq == 1


def test_serve_never_keeps_ready_callbacks_or_a_due_timer_waiting() -> None:
    """A FLUSH spawns its ``fdatasync`` as a callback: a serve entered then would hold it (and the
    Primary's FLUSH) for its whole budget — fsync latency 0.6 → 3 ms in a first version."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert serve_slack(loop, 0.002) == 0.002
        handle = loop.call_later(0.0005, lambda: None)
        assert 0 < serve_slack(loop, 0.002) <= 0.0005
        handle.cancel()
        loop.call_soon(lambda: None)
        assert serve_slack(loop, 0.002) == 0.0

    asyncio.run(main())


def test_a_served_socket_queued_to_read_does_not_count_as_a_waiting_callback() -> None:
    """One poll of the event loop finds the client's and a peer's socket readable together: the
    second's read is queued while the first is handled, and the serve reads that socket itself."""

    class Transport:
        def _read_ready(self) -> None:
            pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = Transport(), Transport()
        loop.call_soon(ours._read_ready)
        assert serve_slack(loop, 0.002, [ours]) == 0.002
        assert serve_slack(loop, 0.002) == 0.0
        loop.call_soon(theirs._read_ready)
        assert serve_slack(loop, 0.002, [ours]) == 0.0

    asyncio.run(main())
