"""Zero-copy receive (rxbuf + wire.Decoder buffered path) and the sendmsg queue (sendq)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl import wire as W
from hastack_blockrepl.rxbuf import BIG, SMALL, BufferPool, Owned, RxBuffer, stable
from hastack_blockrepl.sendq import SendQueue

KEY = b"k" * 32


def stream(frames: list[tuple[int, bytes]], version: int = W.VERSION_MAX) -> bytes:
    enc = W.Encoder(KEY, version)
    return b"".join(bytes(p) for t, payload in frames for p in enc.encode(t, payload, id=len(payload)))


def read_in_chunks(dec: W.Decoder, data: bytes, sizes: list[int]) -> list[tuple[int, bytes, bool]]:
    """Feed ``data`` the way a BufferedProtocol does, reads no larger than ``sizes`` (cycled)."""
    got, pos, i = [], 0, 0
    while pos < len(data):
        buf = dec.get_buffer()
        assert len(buf) > 0
        n = min(len(buf), sizes[i % len(sizes)], len(data) - pos)
        buf[:n] = data[pos : pos + n]
        pos, i = pos + n, i + 1
        got += [(f.type, bytes(f.payload), stable(f.payload)) for f in dec.updated(n)]
    return got


def test_large_payload_is_read_into_its_own_buffer() -> None:
    big = os.urandom(1 << 20)
    frames = [(W.PING, b""), (W.WRITE, big), (W.WRITE, b"x" * 4096), (W.WRITE, big[:BIG]), (W.FLUSH, b"")]
    got = read_in_chunks(W.Decoder(KEY), stream(frames), [65536, 1000, 300000])
    assert [(t, p) for t, p, _ in got] == frames
    assert got[1][2]  # 1 MiB arrived in pieces: an Owned buffer, safe to keep


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0, 1, 4096, BIG - 1, BIG, 300_000]), min_size=1, max_size=8),
    st.lists(st.integers(1, SMALL), min_size=1, max_size=5),
    st.sampled_from([1, 2]),
)
def test_any_read_pattern_yields_the_same_frames(lengths: list[int], sizes: list[int], version: int) -> None:
    frames = [(W.WRITE, os.urandom(n)) for n in lengths]
    got = read_in_chunks(W.Decoder(KEY, version=version), stream(frames, version), sizes)
    assert [(t, p) for t, p, _ in got] == frames


@pytest.mark.parametrize("version", [1, 2])
def test_tampered_large_payload_fails_its_mac(version: int) -> None:
    data = bytearray(stream([(W.WRITE, bytes(200_000))], version))
    data[W.HEADER.size + 100_000] ^= 1
    with pytest.raises(W.AuthError):
        read_in_chunks(W.Decoder(KEY, version=version), bytes(data), [4096])


def test_versions_do_not_accept_each_others_macs() -> None:
    data = stream([(W.WRITE, b"abc")], version=1)
    with pytest.raises(W.AuthError):
        list(W.Decoder(KEY, version=2).feed(data))
    assert [f.payload for f in W.Decoder(KEY, version=1).feed(data)] == [b"abc"]
    nonces = {1: b"a" * 32, 2: b"b" * 32}
    assert W.direction_key(KEY, 1, nonces, 1) != W.direction_key(KEY, 1, nonces, 2)


def test_rxbuffer_compacts_and_hands_out_owned_tails() -> None:
    rx = RxBuffer(size=64)
    rx.get_buffer()[:64] = bytes(range(64))
    rx.updated(64)
    rx.start = 60
    assert len(rx.get_buffer()) == 60 and bytes(rx.mv[:4]) == bytes(range(60, 64))  # compacted
    rx.start_big(2, 10)  # 2 bytes of head, 2 of the tail here, 8 to come
    rx.get_buffer()[:8] = b"z" * 8
    rx.updated(8)
    assert rx.big_done()
    tail = rx.take_big()
    assert bytes(tail) == bytes([62, 63]) + b"z" * 8 and isinstance(tail.obj, Owned)
    assert len(rx.get_buffer()) == 64


def test_sendq_keeps_order_and_never_refers_to_reused_memory() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        congested: list[bool] = []
        q = SendQueue(a, asyncio.get_running_loop(), congested.append, lambda exc: None)
        q.set_limits(high=256 << 10, low=64 << 10)
        reused = bytearray(200_000)
        want = b""
        for i in range(6):
            reused[:] = bytes([i]) * len(reused)
            q.add([b"hdr", memoryview(reused), memoryview(reused)[:100]])
            q.flush()  # what the socket did not take is copied before the buffer changes
            want += b"hdr" + bytes([i]) * 200_100
        assert congested == [True] and q.size > 0
        got = bytearray()
        loop = asyncio.get_running_loop()
        while len(got) < len(want):
            got += await loop.sock_recv(b, 1 << 20)
        assert bytes(got) == want and q.size == 0 and congested == [True, False]
        q.close()
        b.close()

    asyncio.run(main())


def test_pool_reuses_only_buffers_nobody_refers_to() -> None:
    pool = BufferPool()
    a = pool.get(1 << 20)
    a[:3] = b"abc"
    b = pool.get(1 << 20)
    assert a.obj is not b.obj  # a is still held
    kept = a[1:2]
    a_id = id(a.obj)
    del a
    assert id(pool.get(1 << 20).obj) != a_id  # a view of it is still held
    del kept
    c = pool.get(1000 << 10)
    assert id(c.obj) == a_id and len(c) == 1000 << 10 and stable(c)
    assert bytes(c[:3]) == b"abc"  # reused as it is: not zeroed again
    del b, c
    big = [pool.get(32 << 20) for _ in range(4)]
    assert len(pool.free[32 << 20]) == 2 and len({id(v.obj) for v in big}) == 4


def test_decoder_reports_what_a_large_frame_still_needs() -> None:
    """peerconn sets SO_RCVLOWAT from this: it must reach 0 when the frame is complete, or the
    replica would sleep through the next (small) frames until its ping timeout."""
    dec = W.Decoder(KEY)
    data = stream([(W.WRITE, b"x" * (1 << 20)), (W.PING, b"")])
    missing, types, pos = [], [], 0
    for size in (4096, 300_000, 500_000, len(data), len(data)):
        buf = dec.get_buffer()
        n = min(size, len(buf), len(data) - pos)
        buf[:n] = data[pos : pos + n]
        pos += n
        types += [f.type for f in dec.updated(n)]
        missing.append(dec.rx.big_missing())
    total = (1 << 20) + W.MAC_LEN
    assert missing[0] == total - (4096 - W.HEADER.size)
    assert missing[1] == missing[0] - 300_000 and missing[2] == missing[1] - 500_000
    assert pos == len(data) and missing[-1] == 0 and types == [W.WRITE, W.PING]


def test_link_wakes_for_a_whole_large_frame_then_for_any_byte() -> None:
    from types import SimpleNamespace

    from hastack_blockrepl.peerconn import LOWAT_MAX, LinkProtocol

    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    try:
        proto = LinkProtocol.__new__(LinkProtocol)
        proto.lowat, proto.q = 1, SimpleNamespace(sock=a, closed=False)
        lowat = lambda: a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)  # noqa: E731
        proto._set_lowat(700_000)
        assert lowat() == 700_000
        proto._set_lowat(5 << 20)
        assert lowat() == LOWAT_MAX
        proto._set_lowat(0)
        assert lowat() == 1 and proto.lowat == 1
    finally:
        for s in (a, b, srv):
            s.close()
