"""The small-write path's inner loops, done per batch: compiled (``_fast.c``) with this module's
Python versions as the reference (and the fallback where the extension is not built).

A **write batch** is a run of plain NBD WRITEs (no flags, 1 byte to ``max_write``, inside the
volume) that arrived together. Its payload is what the Primary writes locally and sends to a
peer in one WRITES frame (wire version 4), and what the peer writes::

    u32 count | u32 0 | count x (u64 offset | u32 length | u32 0) | the data, in entry order

``scan(buf, start, end, size, al_extent, max_write, max_count, max_bytes)`` frames the
requests in ``buf[start:end]``: each item is either a batch ``(payload, cookies, extents)``
(``cookies``: the requests' 8-byte handles, in order; ``extents``: the distinct activity-log
extents it touches) or a request ``(cmd, flags, cookie, offset, length, data_start)``. It
stops at an incomplete request and at anything malformed (bad magic, a WRITE over 32 MiB),
returning the position: ``nbdproto.parse_requests`` from there raises the protocol error.

``check(payload, size, al_extent)`` checks the whole batch (header, every range inside
``size``, the data length; ValueError) and returns the distinct activity-log extents its writes
touch (all of them, in first-seen order, as ``scan`` reports them).

``apply(fd, payload, size)`` checks the whole batch the same way before writing any of it,
then writes it (OSError on a disk error). Returns the number of writes.

``replies(cookies, structured)`` is the success reply of every cookie, concatenated.

``reads(fd, buf, start, end, size, structured, max_count, max_bytes)`` answers the run of plain
READs (no flag but DF, 1 byte to 32 MiB, inside the volume) at the head of ``buf[start:end]``
from ``fd``: their replies (header and data each, in order), the position after them and their
number. It takes at most ``max_count`` and, after the first, no more than ``max_bytes`` of data;
it stops before a read that fails or comes back short (the per-request path reports it).
"""

from __future__ import annotations

import importlib
import os
import struct
from typing import Any

from hastack_blockrepl import iozero
from hastack_blockrepl import nbdproto as P

HEAD = struct.Struct(">II")
ENTRY = struct.Struct(">QII")
MAX_ENTRIES = 4096
MAX_WRITE = 64 << 10  # larger writes keep the per-request path (no copy into a batch)
MAX_COUNT = 256
MAX_BYTES = 1 << 20


def _batchable(flags: int, cmd: int, offset: int, length: int, size: int, max_write: int) -> bool:
    return cmd == P.CMD_WRITE and flags == 0 and 0 < length <= max_write and offset + length <= size


def py_scan(
    buf: bytes | bytearray | memoryview,
    start: int,
    end: int,
    size: int,
    al_extent: int,
    max_write: int,
    max_count: int,
    max_bytes: int,
) -> tuple[list[tuple[Any, ...]], int]:
    items: list[tuple[Any, ...]] = []
    pos, req = start, P.REQ
    run: list[tuple[int, int, int, int]] = []  # (cookie, offset, length, data start)
    run_bytes = 0

    def close_run() -> None:
        nonlocal run, run_bytes
        if not run:
            return
        head = [HEAD.pack(len(run), 0)] + [ENTRY.pack(o, n, 0) for _, o, n, _ in run]
        data = [bytes(buf[d : d + n]) for _, _, n, d in run]
        cookies = b"".join(c.to_bytes(8, "big") for c, _, _, _ in run)
        items.append((b"".join(head + data), cookies, _extents(((o, n) for _, o, n, _ in run), al_extent)))
        run, run_bytes = [], 0

    while end - pos >= req.size:
        magic, flags, cmd, cookie, offset, length = req.unpack_from(buf, pos)
        if magic != P.REQUEST_MAGIC:
            break
        if cmd == P.CMD_WRITE and (length > P.MAX_REQUEST or end - pos - req.size < length):
            break
        if _batchable(flags, cmd, offset, length, size, max_write):
            if len(run) >= max_count or (run and run_bytes + length > max_bytes):
                close_run()
            run.append((cookie, offset, length, pos + req.size))
            run_bytes += length
            pos += req.size + length
            continue
        close_run()
        items.append((cmd, flags, cookie, offset, length, pos + req.size))
        pos += req.size + (length if cmd == P.CMD_WRITE else 0)
    close_run()
    return items, pos


def entries(payload: bytes | memoryview) -> list[tuple[int, int]]:
    """The (offset, length) of every write of a batch (its table, not checked: see ``apply``)."""
    (count, _) = HEAD.unpack_from(payload, 0)
    return [(o, n) for o, n, _ in ENTRY.iter_unpack(payload[HEAD.size : HEAD.size + ENTRY.size * count])]


def _extents(writes: Any, al_extent: int) -> tuple[int, ...]:
    exts: dict[int, None] = {}
    for o, n in writes:
        for x in range(o // al_extent, (o + n - 1) // al_extent + 1):
            exts[x] = None
    return tuple(exts)


def _validate(mv: memoryview, size: int) -> list[tuple[int, int, int]]:
    """The batch's table, once the whole batch is known to be well formed (else ValueError)."""
    if len(mv) < HEAD.size:
        raise ValueError(f"write batch of {len(mv)} bytes has no header")
    count, zero = HEAD.unpack_from(mv, 0)
    table = HEAD.size + ENTRY.size * count
    if not 1 <= count <= MAX_ENTRIES or zero != 0 or len(mv) < table:
        raise ValueError(f"write batch header invalid ({count} writes in {len(mv)} bytes)")
    ents = list(ENTRY.iter_unpack(mv[HEAD.size : table]))
    total = 0
    for i, (o, n, z) in enumerate(ents):
        if n == 0 or z != 0 or o > size or n > size - o:
            raise ValueError(f"write {i} of a batch at {o}+{n} is empty or beyond the volume ({size})")
        total += n
    if total != len(mv) - table:
        raise ValueError(f"write batch carries {len(mv) - table} data bytes, its table says {total}")
    return ents


def py_check(payload: bytes | memoryview, size: int, al_extent: int) -> tuple[int, ...]:
    if al_extent <= 0:
        raise ValueError("check: activity-log extent of 0 bytes")
    return _extents(((o, n) for o, n, _ in _validate(memoryview(payload), size)), al_extent)


def py_apply(fd: int, payload: bytes | memoryview, size: int) -> int:
    mv = memoryview(payload)
    ents = _validate(mv, size)
    pos = HEAD.size + ENTRY.size * len(ents)
    for o, n, _ in ents:
        iozero.pwrite_all(fd, mv[pos : pos + n], o)
        pos += n
    return len(ents)


def _plain_read(flags: int, cmd: int, offset: int, length: int, size: int) -> bool:
    return cmd == P.CMD_READ and flags & ~P.CMDF_DF == 0 and 0 < length <= P.MAX_REQUEST and offset + length <= size


def py_reads(
    fd: int, buf: bytes | bytearray | memoryview, start: int, end: int, size: int, structured: bool, max_count: int,
    max_bytes: int,
) -> tuple[bytes, int, int]:  # fmt: skip
    out: list[bytes] = []
    pos, n, total = start, 0, 0
    while n < max_count and end - pos >= P.REQ.size:
        magic, flags, cmd, cookie, offset, length = P.REQ.unpack_from(buf, pos)
        if magic != P.REQUEST_MAGIC or not _plain_read(flags, cmd, offset, length, size):
            break
        if n and total + length > max_bytes:
            break
        try:
            data = os.pread(fd, length, offset)
        except OSError:
            break
        if len(data) != length:
            break
        out += [P.read_reply_header(cookie, offset, length, structured), data]
        total += length
        n += 1
        pos += P.REQ.size
    return b"".join(out), pos, n


def py_replies(cookies: bytes, structured: bool) -> bytes:
    if len(cookies) % 8:
        raise ValueError("cookies are 8 bytes each")
    return b"".join(P.reply(c, 0, structured) for (c,) in struct.iter_unpack(">Q", cookies))


scan, check, apply, replies, reads = py_scan, py_check, py_apply, py_replies, py_reads
MAX_READ_BYTES = 1 << 20  # data answered by one ``reads`` call (the first read may be larger)
# the receiving side's paths, compiled only (the frame parser is their reference):
# wire.Decoder.take_writes / take_acks, peer.PeerLink.serve
rx_writes: Any = None
rx_acks: Any = None
serve_writes: Any = None
# the Primary's serve loop and its writes in flight (primary.py), compiled only
Flight: Any = None
# the frame MAC of wire versions >= 2, compiled (wire.frame_mac holds the reference)
Gmac: Any = None
COMPILED = False
if not os.environ.get("HASTACK_BLOCKREPL_PURE_PYTHON"):  # the reference, for comparisons
    try:
        _fast = importlib.import_module("hastack_blockrepl._fast")
    except ImportError:
        pass
    else:
        scan, check, apply, replies, reads = _fast.scan, _fast.check, _fast.apply, _fast.replies, _fast.reads
        COMPILED = True
        if os.environ.get("HASTACK_BLOCKREPL_COMPILED_MAC", "1") != "0":  # 0: for A/B runs
            Gmac = _fast.Gmac
        if os.environ.get("HASTACK_BLOCKREPL_COMPILED_FRAMES", "1") != "0":  # 0: for A/B runs
            rx_writes, rx_acks, serve_writes = _fast.rx_writes, _fast.rx_acks, _fast.serve_writes
            if os.environ.get("HASTACK_BLOCKREPL_PRIMARY_SERVE", "1") != "0":  # 0: for A/B runs
                Flight = _fast.Flight
