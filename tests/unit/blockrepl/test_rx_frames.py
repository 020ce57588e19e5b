"""The compiled receive paths (``Decoder.take_writes`` and ``take_acks``, ``_fast.rx_writes``
and ``rx_acks``) against the frame parser they shortcut. A Secondary's: on any stream of
frames — well-formed write batches, other frames, flags, bad batches, forged tags, lost
frames, extents outside the activity log, a cut anywhere, with and without a key — it takes
exactly the leading frames the parser would hand over as plain WRITES whose extents are all
active, writes exactly what they carry, and leaves the rest (and every error) to the parser.
A Primary's: exactly the ids of the leading acknowledgement frames."""

from __future__ import annotations

import errno
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl import fastpath as F
from hastack_blockrepl import wire as W
from hastack_common.config_blockrepl import AL_EXTENT as AL

pytestmark = pytest.mark.skipif(F.rx_writes is None, reason="the compiled extension is not built")
SIZE = 4 * AL
KEY = bytes(range(32))


def batch(writes: list[tuple[int, int]], fill: int) -> bytes:
    head = F.HEAD.pack(len(writes), 0) + b"".join(F.ENTRY.pack(o, n, 0) for o, n in writes)
    return head + b"".join(bytes([(fill + i) % 251 + 1]) * n for i, (_, n) in enumerate(writes))


writes = st.lists(
    st.tuples(st.integers(0, SIZE // 512 - 1).map(lambda b: b * 512), st.sampled_from([512, 4096, 9000])),
    min_size=1,
    max_size=4,
)
frames = st.tuples(
    st.sampled_from(["writes"] * 6 + ["other", "fua", "bad-batch", "forged", "lost", "beyond"]),
    writes,
)
keys = st.sampled_from([KEY, KEY, None])


def encode(specs: list[tuple[str, list[tuple[int, int]]]], key: bytes | None = KEY) -> bytes:
    enc, out = W.Encoder(key, 6), []
    for i, (kind, drawn) in enumerate(specs):
        payload = batch([(o, min(n, SIZE - o)) for o, n in drawn], i)
        if kind == "bad-batch":
            payload = payload[:-1]
        if kind == "beyond":
            payload = batch([(SIZE - 512, 4096)], i)
        if kind == "lost":
            enc.seq += 1
        ftype = W.ACK_WRITES if kind == "other" else W.WRITES
        flags = W.F_FUA if kind == "fua" else 0
        if kind == "other":
            payload = W.pack_ids([i])
        parts = b"".join(bytes(p) for p in enc.encode(ftype, payload, flags=flags, id=100 + i, offset=90 + i))
        if kind == "forged":
            parts = parts[:-1] + bytes([parts[-1] ^ 1])
        out.append(parts)
    return b"".join(out)


def drain(dec: W.Decoder) -> tuple[list[tuple[int, int, int, int, bytes]], type | None]:
    got: list[tuple[int, int, int, int, bytes]] = []
    try:
        for f in dec.frames():
            got.append((f.type, f.flags, f.id, f.offset, bytes(f.payload)))
    except (W.WireError, W.AuthError) as exc:
        return got, type(exc)
    return got, None


def eligible(frame: tuple[int, int, int, int, bytes], table: dict[int, int]) -> bool:
    ftype, flags, _, _, payload = frame
    if ftype != W.WRITES or flags:
        return False
    try:
        exts = F.py_check(payload, SIZE, AL)
    except ValueError:
        return False
    return all(x in table for x in exts)


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(frames, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    active=st.sets(st.integers(0, SIZE // AL - 1)),
    key=keys,
)
def test_take_writes_takes_what_the_frame_parser_would_hand_over_and_no_more(
    specs: list[tuple[str, list[tuple[int, int]]]], cut: int | None, active: set[int], key: bytes | None
) -> None:
    stream = encode(specs, key)
    if cut is not None:  # the last frame still arriving
        stream = stream[: cut % (len(stream) + 1)]
    table = {x: 0 for x in active}
    with tempfile.TemporaryDirectory() as d:
        disk, ref = os.path.join(d, "disk"), os.path.join(d, "ref")
        for p in (disk, ref):
            with open(p, "wb") as f:
                f.truncate(SIZE)
        fd, rfd = os.open(disk, os.O_RDWR), os.open(ref, os.O_RDWR)
        try:
            fast, plain = W.Decoder(key, version=6), W.Decoder(key, version=6)
            for dec in (fast, plain):
                dec.rx.get_buffer()[: len(stream)] = stream
                dec.rx.updated(len(stream))
            took = fast.take_writes(W.WRITES, SIZE, fd, table)
            assert took is not None
            ids, exts, settled, failed = took
            rest, fast_error = drain(fast)
            everything, error = drain(plain)
            n = len(ids)
            assert failed is None
            assert rest == everything[n:] and fast_error is error
            assert all(eligible(f, table) for f in everything[:n])
            assert n == len(everything) or not eligible(everything[n], table)  # it stops only where it must
            assert ids == [f[2] for f in everything[:n]]
            assert settled == (everything[n - 1][3] if n else -1)
            for f, x in zip(everything[:n], exts, strict=True):
                assert tuple(x) == F.py_check(f[4], SIZE, AL)
                F.py_apply(rfd, f[4], SIZE)
            assert os.pread(fd, SIZE, 0) == os.pread(rfd, SIZE, 0)
        finally:
            os.close(fd)
            os.close(rfd)


def test_a_write_that_fails_is_reported_after_the_ones_that_landed() -> None:
    stream = encode([("writes", [(0, 4096)]), ("writes", [(8192, 4096)]), ("writes", [(16384, 512)])])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "disk")
        with open(path, "wb") as f:
            f.truncate(SIZE)
        fd = os.open(path, os.O_RDONLY)  # every write fails: EBADF
        try:
            dec = W.Decoder(KEY, version=6)
            dec.rx.get_buffer()[: len(stream)] = stream
            dec.rx.updated(len(stream))
            took = dec.take_writes(W.WRITES, SIZE, fd, {0: 0})
        finally:
            os.close(fd)
    assert took is not None
    ids, _, settled, failed = took
    assert ids == [] and failed == (100, errno.EBADF) and settled == 90
    rest, error = drain(dec)  # the failed frame is consumed; the parser goes on after it
    assert [f[2] for f in rest] == [101, 102] and error is None


acks = st.lists(
    st.tuples(
        st.sampled_from(["writes", "recvs", "recvs", "other", "odd", "forged", "lost", "fua"]), st.integers(0, 3)
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(specs=acks, cut=st.one_of(st.none(), st.integers(0, 10**6)), key=keys)
def test_take_acks_takes_the_ids_the_frame_parser_would_hand_over(
    specs: list[tuple[str, int]], cut: int | None, key: bytes | None
) -> None:
    enc, parts = W.Encoder(key, 6), []
    for i, (kind, n) in enumerate(specs):
        ftype = {"writes": W.ACK_WRITES, "other": W.ACK_WRITE}.get(kind, W.ACK_RECVS)
        payload = W.pack_ids([1000 * i + k for k in range(n)]) + (b"x" if kind == "odd" else b"")
        if kind == "lost":
            enc.seq += 1
        frame = b"".join(bytes(p) for p in enc.encode(ftype, payload, flags=W.F_FUA if kind == "fua" else 0, id=i))
        parts.append(frame[:-1] + bytes([frame[-1] ^ 1]) if kind == "forged" else frame)
    stream = b"".join(parts)
    if cut is not None:
        stream = stream[: cut % (len(stream) + 1)]
    fast, plain = W.Decoder(key, version=6), W.Decoder(key, version=6)
    for dec in (fast, plain):
        dec.rx.get_buffer()[: len(stream)] = stream
        dec.rx.updated(len(stream))
    ids = fast.take_acks(W.ACK_RECVS, W.ACK_WRITES)
    assert ids is not None
    rest, fast_error = drain(fast)
    everything, error = drain(plain)

    def eligible(f: tuple[int, int, int, int, bytes]) -> bool:
        return f[0] in (W.ACK_RECVS, W.ACK_WRITES) and not f[1] and len(f[4]) % 8 == 0

    n = len(everything) - len(rest)
    assert rest == everything[n:] and fast_error is error
    assert all(eligible(f) for f in everything[:n])
    assert n == len(everything) or not eligible(everything[n])
    assert ids == [i for f in everything[:n] for i in W.unpack_ids(f[4])]
