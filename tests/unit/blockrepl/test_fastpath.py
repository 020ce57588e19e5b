"""The compiled small-write loops against their Python reference (fastpath.py), byte for byte,
on well-formed and hostile input; and the batch checks that guard a replica's disk."""

from __future__ import annotations

import os
import struct
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl import fastpath as F
from hastack_blockrepl import nbdproto as P

pytestmark = pytest.mark.skipif(not F.COMPILED, reason="the compiled extension is not built")
SIZE = 1 << 20
AL = 64 << 10


def test_the_compiled_loops_are_loaded() -> None:
    """The benchmark and the system tests measure the compiled path: `make venv` builds it."""
    assert F.scan is F._fast.scan and F.apply is F._fast.apply and F.replies is F._fast.replies
    assert F.check is F._fast.check and F.reads is F._fast.reads


def request(cmd: int, flags: int, cookie: int, offset: int, length: int, data: bytes = b"") -> bytes:
    return P.REQ.pack(P.REQUEST_MAGIC, flags, cmd, cookie, offset, length) + data


requests = st.tuples(
    st.sampled_from([P.CMD_WRITE, P.CMD_WRITE, P.CMD_WRITE, P.CMD_READ, P.CMD_FLUSH, P.CMD_TRIM, 9]),
    st.sampled_from([0, 0, 0, P.CMDF_FUA, 2]),
    st.integers(0, 2**64 - 1),
    st.one_of(st.integers(0, SIZE // 512).map(lambda b: b * 512), st.integers(0, 2**64 - 1)),
    st.sampled_from([0, 1, 512, 4096, 9000, 70000]),
)


def stream(reqs: list[tuple[int, int, int, int, int]]) -> bytes:
    out = []
    for i, (cmd, flags, cookie, offset, length) in enumerate(reqs):
        data = bytes([i % 251]) * length if cmd == P.CMD_WRITE else b""
        out.append(request(cmd, flags, cookie, offset, length, data))
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(
    reqs=st.lists(requests, max_size=12),
    cut=st.integers(0, 10**6),
    junk=st.binary(max_size=40),
    max_count=st.integers(1, 5),
    max_bytes=st.sampled_from([1, 4096, 10000, 1 << 20]),
)
def test_scan_matches_the_reference(
    reqs: list[tuple[int, int, int, int, int]], cut: int, junk: bytes, max_count: int, max_bytes: int
) -> None:
    buf = bytearray(b"\0" * 3 + stream(reqs) + junk)
    end = min(len(buf), 3 + cut)
    args = (3, end, SIZE, AL, 64 << 10, max_count, max_bytes)
    assert F._fast.scan(buf, *args) == F.py_scan(buf, *args)


def test_scan_groups_plain_writes_and_keeps_the_rest_in_order() -> None:
    buf = (
        request(P.CMD_WRITE, 0, 1, 0, 4, b"aaaa")
        + request(P.CMD_WRITE, 0, 2, AL, 2, b"bb")
        + request(P.CMD_FLUSH, 0, 3, 0, 0)
        + request(P.CMD_WRITE, P.CMDF_FUA, 4, 8, 1, b"c")
        + request(P.CMD_WRITE, 0, 5, SIZE - 1, 2, b"dd")  # beyond the volume: the request path
        + request(P.CMD_WRITE, 0, 6, 16, 3, b"eee")[:-1]  # still arriving
    )
    items, pos = F.scan(buf, 0, len(buf), SIZE, AL, 64 << 10, 256, 1 << 20)
    assert pos == len(buf) - (28 + 2)
    batch, flush, fua, beyond = items
    payload, cookies, exts = batch
    assert F.entries(payload) == [(0, 4), (AL, 2)] and payload.endswith(b"aaaabb")
    assert cookies == struct.pack(">QQ", 1, 2) and exts == (0, 1)
    assert flush[:3] == (P.CMD_FLUSH, 0, 3) and fua[:2] == (P.CMD_WRITE, P.CMDF_FUA) and beyond[2] == 5


@pytest.mark.parametrize("structured", [False, True])
def test_replies_match_the_reference(structured: bool) -> None:
    cookies = struct.pack(">3Q", 0, 7, 2**64 - 1)
    assert F.replies(cookies, structured) == F.py_replies(cookies, structured)
    assert F.replies(cookies, structured) == b"".join(P.reply(c, 0, structured) for c in (0, 7, 2**64 - 1))


def batch(writes: list[tuple[int, bytes]]) -> bytes:
    head = [F.HEAD.pack(len(writes), 0)] + [F.ENTRY.pack(o, len(d), 0) for o, d in writes]
    return b"".join(head + [d for _, d in writes])


def hostile_batches() -> list[tuple[str, bytes]]:
    good = batch([(0, b"x" * 10), (100, b"y" * 5)])
    return [
        ("no header", good[:5]),
        ("zero writes", F.HEAD.pack(0, 0)),
        ("table cut short", good[: F.HEAD.size + F.ENTRY.size]),
        ("data short", good[:-1]),
        ("data long", good + b"z"),
        ("beyond the volume", batch([(SIZE - 4, b"x" * 5)])),
        ("offset overflow", batch([(2**64 - 2, b"x" * 5)])),
        ("empty write", F.HEAD.pack(1, 0) + F.ENTRY.pack(0, 0, 0)),
        ("reserved bits", F.HEAD.pack(1, 1) + F.ENTRY.pack(0, 1, 0) + b"x"),
        ("too many writes", F.HEAD.pack(F.MAX_ENTRIES + 1, 0) + b"\0" * 64),
    ]


@pytest.mark.parametrize("impl", ["compiled", "python"])
def test_apply_writes_a_whole_batch_or_nothing(impl: str) -> None:
    apply = F._fast.apply if impl == "compiled" else F.py_apply
    with tempfile.TemporaryFile() as f:
        f.truncate(SIZE)
        fd = f.fileno()
        assert apply(fd, batch([(0, b"x" * 10), (SIZE - 5, b"y" * 5)]), SIZE) == 2
        assert os.pread(fd, 10, 0) == b"x" * 10 and os.pread(fd, 5, SIZE - 5) == b"y" * 5
        before = os.pread(fd, SIZE, 0)
        for why, payload in hostile_batches():
            with pytest.raises(ValueError):
                apply(fd, payload, SIZE)
            assert os.pread(fd, SIZE, 0) == before, why
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
        try:
            with pytest.raises(OSError):
                apply(ro, batch([(0, b"z")]), SIZE)
        finally:
            os.close(ro)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_apply_agrees_with_the_reference_on_any_bytes(payload: bytes) -> None:
    with tempfile.TemporaryFile() as f:
        f.truncate(4096)
        outcomes = []
        for apply in (F._fast.apply, F.py_apply):
            try:
                outcomes.append(("ok", apply(f.fileno(), payload, 4096)))
            except ValueError:
                outcomes.append(("refused", None))
        assert outcomes[0] == outcomes[1]


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200), al=st.sampled_from([1, 7, 4096]))
def test_check_agrees_with_the_reference_on_any_bytes(payload: bytes, al: int) -> None:
    outcomes = []
    for check in (F._fast.check, F.py_check):
        try:
            outcomes.append(("ok", check(payload, 4096, al)))
        except ValueError:
            outcomes.append(("refused", None))
    assert outcomes[0] == outcomes[1]


def test_every_extent_of_a_batch_is_reported() -> None:
    """256 writes, each across a different extent boundary: 512 extents. The activity log must
    see every one (a batch whose extents were cut short could land outside the log)."""
    size = 600 * AL
    writes = [(2 * k * AL - 2, b"ab" * 2) for k in range(1, 257)]
    want = tuple(x for k in range(1, 257) for x in (2 * k - 1, 2 * k))
    assert len(set(want)) == 512
    assert F._fast.check(batch(writes), size, AL) == want == F.py_check(batch(writes), size, AL)
    buf = bytearray(b"".join(request(P.CMD_WRITE, 0, i, o, len(d), d) for i, (o, d) in enumerate(writes)))
    args = (0, len(buf), size, AL, 64 << 10, 256, 1 << 20)
    items, _ = F._fast.scan(buf, *args)
    assert len(items) == 1 and items[0][2] == want
    assert (items, len(buf)) == F.py_scan(buf, *args)


read_requests = st.tuples(
    st.sampled_from([P.CMD_READ, P.CMD_READ, P.CMD_READ, P.CMD_WRITE, P.CMD_FLUSH]),
    st.sampled_from([0, 0, P.CMDF_DF, P.CMDF_FUA]),
    st.integers(0, 2**64 - 1),
    st.one_of(st.integers(0, SIZE // 512).map(lambda b: b * 512), st.integers(0, 2**64 - 1)),
    st.sampled_from([0, 1, 512, 4096, 9000, SIZE]),
)


@settings(max_examples=300, deadline=None)
@given(
    reqs=st.lists(read_requests, max_size=10),
    cut=st.integers(0, 10**6),
    structured=st.booleans(),
    max_count=st.integers(1, 6),
    max_bytes=st.sampled_from([1, 4096, 10000, 1 << 20]),
)
def test_reads_match_the_reference(
    reqs: list[tuple[int, int, int, int, int]], cut: int, structured: bool, max_count: int, max_bytes: int
) -> None:
    """Runs of plain reads answered in one compiled call: the same replies, position and count
    as the Python reference (which builds each reply as the per-request path does)."""
    buf = bytearray(b"\0" * 5 + stream(reqs))
    end = max(5, len(buf) - cut % (len(buf) + 1))
    with tempfile.TemporaryFile() as f:
        f.write(bytes(range(256)) * (SIZE // 256))
        f.flush()
        want = F.py_reads(f.fileno(), buf, 5, end, SIZE, structured, max_count, max_bytes)
        got = F._fast.reads(f.fileno(), buf, 5, end, SIZE, structured, max_count, max_bytes)
    assert got == want


def test_a_read_that_fails_is_left_for_the_per_request_path() -> None:
    buf = request(P.CMD_READ, 0, 1, 0, 4096) + request(P.CMD_READ, 0, 2, 4096, 4096)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "disk")
        with open(path, "wb") as f:
            f.truncate(4096)  # the second read runs past the end of the file: short
        fd = os.open(path, os.O_RDONLY)
        try:
            replies, pos, n = F._fast.reads(fd, buf, 0, len(buf), SIZE, False, 16, 1 << 20)
        finally:
            os.close(fd)
        assert (n, pos) == (1, P.REQ.size) and replies == P.simple_reply(1) + bytes(4096)
        wfd = os.open(path, os.O_WRONLY)  # reads fail at once (EBADF)
        try:
            assert F._fast.reads(wfd, buf, 0, len(buf), SIZE, True, 16, 1 << 20) == (b"", 0, 0)
        finally:
            os.close(wfd)
