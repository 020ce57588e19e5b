"""The Primary's compiled serve loop (``_fast.Flight``, primary.py) on real socket pairs: a
client's plain writes become the same write batches ``fastpath.scan`` makes, go to every peer
in authenticated WRITES frames (in sequence, the settled id in the offset) before the local
disk, and are answered only once every peer acknowledged them (protocol A: once written);
everything else is handed back with the buffers and sequence numbers where the Python paths
continue: a request or frame it does not take, an acknowledgement of a write it did not start,
the deadline, a failed local write, a full socket, the event loop's descriptor, a closed one."""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from harness.sockets import received
from hastack_blockrepl import fastpath as F
from hastack_blockrepl import nbdproto as P
from hastack_blockrepl import wire as W
from hastack_blockrepl.actlog import ActivityLog
from hastack_blockrepl.metrics import BUCKETS
from hastack_blockrepl.rxbuf import RxBuffer
from hastack_common.config_blockrepl import AL_EXTENT

pytestmark = pytest.mark.skipif(F.Flight is None, reason="the compiled extension is not built")
SIZE = 4 * AL_EXTENT
NO_PENDING = (1 << 64) - 1
SIMPLE = struct.Struct(">IIQ")  # an NBD simple reply: magic, error, cookie


class Peer:
    """A Secondary's end of a replication connection, and the Primary's codec state for it."""

    def __init__(self, bit: int) -> None:
        self.theirs, self.ours = socket.socketpair()
        to_sec, from_sec = bytes([bit]) * 32, bytes([bit + 100]) * 32
        self.bit = bit
        self.enc, self.dec = W.Encoder(to_sec, 6), W.Decoder(from_sec, version=6)  # the Primary's
        self.sec_dec, self.sec_enc = W.Decoder(to_sec, version=6), W.Encoder(from_sec, 6)  # the Secondary's

    def frames(self) -> list[W.Frame]:
        """What the Primary sent this peer (all of it must decode: sequence, tags)."""
        got = list(self.sec_dec.feed(received(self.theirs)))
        assert self.sec_dec.rx.available == 0, "a partial frame"
        return got

    def ack(self, *ids: int, ftype: int = W.ACK_WRITES) -> None:
        self.theirs.sendall(b"".join(bytes(p) for p in self.sec_enc.encode(ftype, W.pack_ids(list(ids)))))

    def send(self, ftype: int, payload: bytes = b"", **kw: int) -> None:
        self.theirs.sendall(b"".join(bytes(p) for p in self.sec_enc.encode(ftype, payload, **kw)))

    def arg(self) -> tuple[Any, ...]:
        rx = self.dec.rx
        return (self.ours.fileno(), rx.buf, rx.start, rx.end, self.dec.seq, self.dec.mac, self.enc.seq, self.enc.mac,
                self.bit)  # fmt: skip

    def close(self) -> None:
        self.theirs.close()
        self.ours.close()


class Primary:
    def __init__(self, d: str, npeers: int = 1, mode: int = os.O_RDWR) -> None:
        path = os.path.join(d, "disk")
        with open(path, "wb") as f:
            f.truncate(SIZE)
        self.fd = os.open(path, mode)
        self.client, self.nbd = socket.socketpair()
        self.rx = RxBuffer()
        self.peers = [Peer(1 << i) for i in range(npeers)]
        self.flight = F.Flight(BUCKETS)
        self.table: dict[int, int] = {x: 0 for x in range(SIZE // AL_EXTENT)}
        self.next_id, self.in_flight = 100, 0

    def serve(self, budget: float = 0.05, **kw: Any) -> dict[str, Any]:
        rx = self.rx
        args = dict(room=512, py_oldest=NO_PENDING, answer_at_once=False, deadline=math.inf, watch=-1,
                    max_count=F.MAX_COUNT)  # fmt: skip
        args.update(kw)
        out = self.flight.serve(
            self.nbd.fileno(), rx.buf, rx.start, rx.end, self, False, args["room"],
            tuple(p.arg() for p in self.peers), SIZE, self.fd, self.table, AL_EXTENT, F.MAX_WRITE, args["max_count"],
            F.MAX_BYTES, self.in_flight, self.next_id, args["py_oldest"], W.ACK_RECVS, W.ACK_WRITES,
            args["answer_at_once"], args["deadline"], args["watch"], budget, 256,
        )  # fmt: skip
        rx.start, rx.end, self.next_id, submitted, answered, batches, unsent, others, peers_out, failed, why = out
        self.in_flight += submitted - answered
        for p, state in zip(self.peers, peers_out, strict=True):
            p.dec.rx.start, p.dec.rx.end, p.dec.seq, p.enc.seq = state[:4]
        return {"why": why, "submitted": submitted, "answered": answered, "batches": batches, "unsent": unsent,
                "others": others, "peers": peers_out, "failed": failed}  # fmt: skip

    def replies(self) -> list[int]:
        """The cookies the client got success replies for."""
        data = received(self.client)
        assert len(data) % 16 == 0
        out = []
        for i in range(0, len(data), 16):
            magic, err, cookie = SIMPLE.unpack_from(data, i)
            assert magic == 0x67446698 and err == 0
            out.append(cookie)
        return out

    def close(self) -> None:
        os.close(self.fd)
        self.client.close()
        self.nbd.close()
        for p in self.peers:
            p.close()


def write(cookie: int, offset: int, data: bytes, flags: int = 0) -> bytes:
    return P.REQ.pack(P.REQUEST_MAGIC, flags, P.CMD_WRITE, cookie, offset, len(data)) + data


def request(cmd: int, cookie: int, offset: int = 0, length: int = 4096) -> bytes:
    return P.REQ.pack(P.REQUEST_MAGIC, 0, cmd, cookie, offset, length)


@pytest.fixture
def d() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield d


@pytest.fixture
def prim(d: str) -> Iterator[Primary]:
    p = Primary(d)
    yield p
    p.close()


def test_writes_go_to_the_peer_first_and_are_answered_only_once_it_acknowledged(prim: Primary) -> None:
    reqs = write(1, 0, b"a" * 4096) + write(2, AL_EXTENT, b"b" * 512) + write(3, 8192, b"c" * 4096)
    prim.client.sendall(reqs)
    out = prim.serve()
    assert out["why"] == "budget" and out["submitted"] == 3 and out["answered"] == 0 and out["batches"] == 1
    (f,) = prim.peers[0].frames()
    items, _ = F.py_scan(reqs, 0, len(reqs), SIZE, AL_EXTENT, F.MAX_WRITE, F.MAX_COUNT, F.MAX_BYTES)
    ((payload, _cookies, exts),) = items
    assert (f.type, f.id, f.offset, bytes(f.payload)) == (W.WRITES, 100, 99, payload)  # settled: below its own id
    assert os.pread(prim.fd, 4096, 0) == b"a" * 4096 and os.pread(prim.fd, 512, AL_EXTENT) == b"b" * 512
    assert prim.replies() == []  # protocol C: not before the peer wrote it
    assert len(prim.flight) == 1 and prim.flight.oldest() == 100 and set(prim.flight.extents()) == set(exts)
    assert prim.flight.lag(1) == 4096 + 512 + 4096
    prim.peers[0].ack(100)
    out = prim.serve()
    assert out["answered"] == 3 and prim.replies() == [1, 2, 3] and len(prim.flight) == 0
    counts, seconds = prim.flight.latency()
    assert sum(counts) == 3 and seconds > 0


@pytest.mark.parametrize(("n", "most", "sizes"), [(13, 8, [7, 6]), (16, 8, [8, 8]), (17, 8, [6, 6, 5]), (8, 8, [8])])
def test_a_long_run_goes_as_near_equal_batches(prim: Primary, n: int, most: int, sizes: list[int]) -> None:
    """Pipelining: the peer can write and acknowledge the first while the next is on its way;
    each batch is answered on its own acknowledgement."""
    prim.client.sendall(b"".join(write(c, c * 4096, bytes([c]) * 4096) for c in range(1, n + 1)))
    out = prim.serve(max_count=most)
    assert out["submitted"] == n and out["batches"] == len(sizes)
    frames = prim.peers[0].frames()
    assert [struct.unpack_from(">I", f.payload)[0] for f in frames] == sizes
    assert [f.id for f in frames] == list(range(100, 100 + len(sizes)))
    prim.peers[0].ack(100)
    prim.serve()
    assert prim.replies() == list(range(1, sizes[0] + 1))
    assert [os.pread(prim.fd, 4096, c * 4096) for c in (1, n)] == [bytes([1]) * 4096, bytes([n]) * 4096]


def test_with_no_budget_it_takes_what_is_received_and_waits_for_nothing(prim: Primary) -> None:
    """serve_read's pass while callbacks are ready: the writes already read are started (not
    left to the slower Python path), nothing more is read, no acknowledgement awaited."""
    here = write(1, 0, b"a" * 4096) + write(2, 4096, b"b" * 4096)
    rx = prim.rx
    rx.buf[rx.end : rx.end + len(here)] = here
    rx.end += len(here)
    prim.client.sendall(write(3, 8192, b"c" * 4096))  # in the socket, not read yet
    out = prim.serve(budget=0.0)
    assert out["why"] == "budget" and out["submitted"] == 2 and out["answered"] == 0
    assert [f.id for f in prim.peers[0].frames()] == [100] and rx.start == rx.end
    prim.peers[0].ack(100)
    out = prim.serve()
    assert out["submitted"] == 1 and prim.replies() == [1, 2]


def test_with_two_peers_an_answer_waits_for_both(d: str) -> None:
    prim = Primary(d, npeers=2)
    try:
        prim.client.sendall(write(7, 0, b"x" * 4096))
        prim.serve()
        assert [f.id for f in prim.peers[0].frames()] == [100] and [f.id for f in prim.peers[1].frames()] == [100]
        prim.peers[1].ack(100)
        assert prim.serve()["answered"] == 0 and prim.replies() == []
        prim.peers[1].ack(100)  # a duplicate counts for nothing
        assert prim.serve()["answered"] == 0 and prim.replies() == []
        prim.peers[0].ack(100, ftype=W.ACK_RECVS)
        assert prim.serve()["answered"] == 1 and prim.replies() == [7]
    finally:
        prim.close()


def test_protocol_a_answers_once_written_and_keeps_the_write_until_acknowledged(prim: Primary) -> None:
    prim.client.sendall(write(5, 0, b"y" * 4096))
    out = prim.serve(answer_at_once=True)
    assert out["answered"] == 1 and prim.replies() == [5] and len(prim.flight) == 1
    prim.peers[0].ack(100)
    prim.serve(answer_at_once=True)
    assert len(prim.flight) == 0 and prim.replies() == []


def test_the_settled_id_counts_the_engines_own_writes(prim: Primary) -> None:
    prim.client.sendall(write(1, 0, b"a" * 4096))
    prim.serve(py_oldest=42)
    (f,) = prim.peers[0].frames()
    assert f.offset == 41


@pytest.mark.parametrize(
    "head",
    [request(P.CMD_READ, 9), request(P.CMD_FLUSH, 9, 0, 0), write(9, 0, b"f" * 4096, P.CMDF_FUA)],
    ids=["read", "flush", "fua-write"],
)
def test_a_request_it_does_not_take_is_left_where_the_parser_finds_it(prim: Primary, head: bytes) -> None:
    first = write(1, 0, b"a" * 4096)
    prim.client.sendall(first + head + write(2, 0, b"b" * 4096))
    out = prim.serve()
    assert out["why"] == "request" and out["submitted"] == 1
    assert prim.rx.start == len(first) and bytes(prim.rx.buf[prim.rx.start : prim.rx.start + 28]) == head[:28]


def test_a_write_outside_the_activity_log_goes_to_the_engine(prim: Primary) -> None:
    del prim.table[2]
    prim.client.sendall(write(1, 2 * AL_EXTENT, b"z" * 4096))
    out = prim.serve()
    assert out["why"] == "request" and out["submitted"] == 0 and prim.peers[0].frames() == []
    assert os.pread(prim.fd, 4096, 2 * AL_EXTENT) == bytes(4096)


def test_an_acknowledgement_of_another_write_is_handed_back(prim: Primary) -> None:
    prim.peers[0].ack(55, 56)
    out = prim.serve()
    assert out["why"] == "foreign" and out["peers"][0][7] == [55, 56]


def test_a_frame_it_does_not_take_is_left_for_the_parser(prim: Primary) -> None:
    prim.peers[0].send(W.PING)
    out = prim.serve()
    assert out["why"] == "frame"
    assert [f.type for f in prim.peers[0].dec.frames()] == [W.PING]


def test_a_forged_acknowledgement_is_left_for_the_parser(prim: Primary) -> None:
    prim.client.sendall(write(1, 0, b"a" * 4096))
    prim.serve()
    forged = W.Encoder(b"\x99" * 32, 6)
    prim.peers[0].theirs.sendall(b"".join(bytes(p) for p in forged.encode(W.ACK_WRITES, W.pack_ids([100]))))
    out = prim.serve()
    assert out["why"] == "frame" and out["answered"] == 0 and prim.replies() == []
    with pytest.raises(W.AuthError):
        list(prim.peers[0].dec.frames())


def test_past_the_deadline_nothing_is_started_or_answered(prim: Primary) -> None:
    prim.client.sendall(write(1, 0, b"a" * 4096))
    prim.serve()
    peer = prim.peers[0]
    peer.ack(100)
    got = peer.ours.recv(4096)  # read already, as by the event loop before the loop starts
    rx = peer.dec.rx
    rx.buf[rx.end : rx.end + len(got)] = got
    rx.end += len(got)
    prim.client.sendall(write(2, 4096, b"b" * 4096))
    out = prim.serve(deadline=0.0)
    assert out["why"] == "deadline" and out["answered"] == 0 and out["submitted"] == 0 and prim.replies() == []
    ((wid, _, _, conn, _, waiting, acked, answered, local_ok, _),) = prim.flight.drain()
    assert (wid, waiting, acked, answered, local_ok, conn) == (100, 0, 1, 0, 1, prim) and len(prim.flight) == 0


def test_a_failed_local_write_is_handed_back_after_the_peers_got_it(d: str) -> None:
    prim = Primary(d, mode=os.O_RDONLY)
    try:
        prim.client.sendall(write(1, 0, b"a" * 4096) + request(P.CMD_READ, 2))
        out = prim.serve()
        assert out["why"] == "failed" and out["failed"] == (100, errno.EBADF) and out["answered"] == 0
        assert [f.id for f in prim.peers[0].frames()] == [100]
        (entry,) = prim.flight.drain()
        assert entry[8] == 0  # local_ok
    finally:
        prim.close()


def test_answers_of_another_connection_are_handed_back(prim: Primary) -> None:
    prim.client.sendall(write(1, 0, b"a" * 4096))
    prim.serve()
    prim.peers[0].ack(100)
    other = Primary.__new__(Primary)  # another connection object: the loop only compares identity
    rx = prim.rx
    out = prim.flight.serve(
        prim.nbd.fileno(), rx.buf, rx.start, rx.end, other, False, 512, tuple(p.arg() for p in prim.peers), SIZE,
        prim.fd, prim.table, AL_EXTENT, F.MAX_WRITE, F.MAX_COUNT, F.MAX_BYTES, 0, 200, NO_PENDING, W.ACK_RECVS,
        W.ACK_WRITES, False, math.inf, -1, 0.05, 256,
    )  # fmt: skip
    ((conn, replies, n),) = out[7]
    assert conn is prim and n == 1 and replies == F.py_replies((1).to_bytes(8, "big"), False)


def test_acknowledgements_outside_the_loop(prim: Primary) -> None:
    prim.client.sendall(write(1, 0, b"a" * 4096))
    prim.serve()
    prim.client.sendall(write(2, 4096, b"b" * 4096))
    prim.serve()
    answers, unknown = prim.flight.ack(1, [101, 77], math.inf)
    assert unknown == [77] and [(c, n) for c, _, n in answers] == [(prim, 1)] and prim.flight.oldest() == 100


def test_a_peer_socket_that_takes_no_more_gets_the_rest_later(prim: Primary) -> None:
    peer = prim.peers[0]
    peer.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.ours.setblocking(False)
    filler = 0
    try:
        while True:
            filler += peer.ours.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    prim.client.sendall(write(1, 0, b"a" * 60000) + write(2, 0, b"b" * 4096))
    out = prim.serve()
    assert out["why"] == "blocked" and out["submitted"] == 2
    unsent = out["peers"][0][5]
    assert unsent
    (f,) = peer.sec_dec.feed(received(peer.theirs)[filler:] + unsent)  # what went out, then the rest: one whole frame
    assert f.type == W.WRITES and f.id == 100


def test_the_loop_returns_when_the_event_loop_has_work(prim: Primary) -> None:
    r, w = os.pipe()
    os.write(w, b"x")
    try:
        assert prim.serve(budget=30, watch=r)["why"] == "loop"
    finally:
        os.close(r)
        os.close(w)


def test_the_loop_returns_when_the_client_goes(prim: Primary) -> None:
    prim.client.shutdown(socket.SHUT_WR)
    assert prim.serve(budget=30)["why"] == "closed"


def test_no_more_than_room_requests_in_flight(prim: Primary) -> None:
    prim.client.sendall(b"".join(write(i, i * 4096, b"q" * 4096) for i in range(1, 6)))
    prim.in_flight = 509
    out = prim.serve(room=512)
    assert out["submitted"] == 3 and out["why"] == "budget"


def test_the_activity_log_never_evicts_an_extent_with_serve_loop_writes_in_flight() -> None:
    """The loop's writes are counted in its flight, not in the log: the engine passes their
    extents as busy (an evicted extent with a write in flight would be missed after a crash)."""
    al = ActivityLog(2, [0, 1])  # 0 is the least recently used
    assert al.add({5}, busy=frozenset({0})) == [1]
    assert set(al.active()) == {0, 5}
    assert ActivityLog(2, [0, 1]).add({5}) == [0]
