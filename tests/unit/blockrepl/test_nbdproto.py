"""NBD wire codec: handshake state machine, request framing, replies."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl import nbdproto as P

EXPORT = P.Export("r0", 1 << 20, P.TF_HAS_FLAGS | P.TF_SEND_FLUSH, "desc")


def opt(option: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", P.IHAVEOPT, option, len(data)) + data


def go_payload(name: str, infos: tuple[int, ...] = ()) -> bytes:
    return struct.pack(">I", len(name)) + name.encode() + struct.pack(f">H{len(infos)}H", len(infos), *infos)


def replies(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        magic, option, rtype, length = P.OPT_REP.unpack_from(data, pos)
        assert magic == P.OPT_REPLY_MAGIC
        out.append((option, rtype, data[pos + P.OPT_REP.size : pos + P.OPT_REP.size + length]))
        pos += P.OPT_REP.size + length
    return out


def hs(**kw: object) -> P.ServerHandshake:
    h = P.ServerHandshake({"r0": EXPORT}, default="r0", **kw)  # type: ignore[arg-type]
    greeting = h.greeting()
    assert struct.unpack(">QQH", greeting) == (P.NBDMAGIC, P.IHAVEOPT, 3)
    return h


def test_go_enters_transmission_and_reports_size_and_flags() -> None:
    h = hs()
    out = h.feed(struct.pack(">I", 3) + opt(P.OPT_GO, go_payload("r0", (P.INFO_BLOCK_SIZE, P.INFO_NAME))))
    reps = replies(out)
    assert reps[-1][1] == P.REP_ACK
    info = [r for r in reps if r[1] == P.REP_INFO]
    assert struct.unpack(">HQH", info[0][2]) == (P.INFO_EXPORT, 1 << 20, EXPORT.flags)
    assert any(struct.unpack_from(">H", r[2])[0] == P.INFO_BLOCK_SIZE for r in info)
    assert h.state == "transmission" and h.export == EXPORT


def test_default_export_by_empty_name_and_unknown_export_refused() -> None:
    h = hs()
    reps = replies(h.feed(struct.pack(">I", 1) + opt(P.OPT_INFO, go_payload("nope"))))
    assert reps == [(P.OPT_INFO, P.REP_ERR_UNKNOWN, b"no export named 'nope'")]
    assert h.state == "options"
    h.feed(opt(P.OPT_GO, go_payload("")))
    assert h.state == "transmission"


def test_list_structured_abort() -> None:
    h = hs()
    reps = replies(h.feed(struct.pack(">I", 1) + opt(P.OPT_LIST) + opt(P.OPT_STRUCTURED_REPLY)))
    assert reps[0][1] == P.REP_SERVER and reps[0][2] == struct.pack(">I", 2) + b"r0"
    assert reps[1][1] == P.REP_ACK and reps[2][1] == P.REP_ACK and h.structured
    reps = replies(h.feed(opt(P.OPT_ABORT)))
    assert reps == [(P.OPT_ABORT, P.REP_ACK, b"")] and h.state == "closed"


def test_unknown_option_unsupported_and_refusal_hook() -> None:
    h = hs(refuse=lambda: "Secondary")
    reps = replies(h.feed(struct.pack(">I", 1) + opt(99) + opt(P.OPT_GO, go_payload("r0"))))
    assert reps[0][1] == P.REP_ERR_UNSUP
    assert reps[1] == (P.OPT_GO, P.REP_ERR_POLICY, b"Secondary")
    assert h.state == "options"


def test_bad_magic_oversize_option_and_old_client_close() -> None:
    h = hs()
    h.feed(struct.pack(">I", 1) + struct.pack(">QII", 1234, P.OPT_GO, 0))
    assert h.state == "closed" and "magic" in h.reason
    h = hs()
    h.feed(struct.pack(">I", 1) + struct.pack(">QII", P.IHAVEOPT, P.OPT_GO, P.MAX_OPTION + 1))
    assert h.state == "closed"
    h = hs()
    h.feed(struct.pack(">I", 0))
    assert h.state == "closed"


def test_truncated_go_payloads_get_invalid() -> None:
    h = hs()
    for payload in (b"", b"\0\0\0\x09r0\0\0", go_payload("r0") + b"x"):
        reps = replies(
            h.feed((struct.pack(">I", 1) if h.state == "greeting" else b"") + opt(P.OPT_GO, payload))
        )
        assert reps[0][1] == P.REP_ERR_INVALID


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_handshake_never_crashes_on_garbage(data: bytes, step: int) -> None:
    h = hs()
    for i in range(0, len(data), step):
        h.feed(data[i : i + step])
        if h.state not in ("options", "greeting"):
            break
    assert h.state in ("greeting", "options", "transmission", "closed")


def req(
    cmd: int,
    offset: int,
    length: int,
    data: bytes = b"",
    flags: int = 0,
    cookie: int = 7,
    magic: int = P.REQUEST_MAGIC,
) -> bytes:
    return P.REQ.pack(magic, flags, cmd, cookie, offset, length) + data


def test_parse_requests_batch_and_partial_write() -> None:
    buf = (
        req(P.CMD_READ, 0, 512)
        + req(P.CMD_WRITE, 4096, 4, b"abcd", flags=P.CMDF_FUA)
        + req(P.CMD_FLUSH, 0, 0)
    )
    reqs, pos = P.parse_requests(buf, 0, 1 << 20)
    assert [r.cmd for r in reqs] == [P.CMD_READ, P.CMD_WRITE, P.CMD_FLUSH] and pos == len(buf)
    assert bytes(reqs[1].data) == b"abcd" and reqs[1].flags == P.CMDF_FUA and all(r.error == 0 for r in reqs)
    part = req(P.CMD_WRITE, 0, 8, b"1234")
    reqs, pos = P.parse_requests(part, 0, 1 << 20)
    assert reqs == [] and pos == 0


def test_out_of_range_and_bad_requests_get_errnos() -> None:
    size = 1 << 20
    cases = [
        (req(P.CMD_READ, size - 1, 2), P.EINVAL),
        (req(P.CMD_WRITE, size, 1, b"x"), P.ENOSPC),
        (req(P.CMD_WRITE_ZEROES, size - 4096, 8192), P.ENOSPC),
        (req(P.CMD_READ, 0, P.MAX_REQUEST + 1), P.EOVERFLOW),
        (req(P.CMD_FLUSH, 1, 0), P.EINVAL),
        (req(77, 0, 0), P.EINVAL),
        (req(P.CMD_READ, 2**64 - 1, 1), P.EINVAL),
    ]
    for raw, errno in cases:
        reqs, _ = P.parse_requests(raw, 0, size)
        assert reqs[0].error == errno, raw


def test_framing_errors_raise() -> None:
    for raw in (req(P.CMD_READ, 0, 1, magic=0xDEADBEEF), req(P.CMD_WRITE, 0, P.MAX_REQUEST + 1)):
        try:
            P.parse_requests(raw, 0, 1 << 40)
        except P.ProtocolError:
            continue
        raise AssertionError("expected ProtocolError")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_request_parser_never_crashes(data: bytes) -> None:
    try:
        reqs, pos = P.parse_requests(data, 0, 1 << 20)
    except P.ProtocolError:
        return
    assert 0 <= pos <= len(data)
    for r in reqs:
        assert r.error or r.offset + r.length <= 1 << 20 or r.cmd in (P.CMD_DISC, P.CMD_FLUSH)


def test_replies() -> None:
    assert struct.unpack(">IIQ", P.reply(9, 0, False)) == (P.SIMPLE_REPLY_MAGIC, 0, 9)
    magic, flags, rtype, cookie, length = P.STRUCTURED.unpack_from(P.reply(9, P.EIO, True, "bad"))
    assert (magic, flags, rtype, cookie, length) == (P.STRUCTURED_REPLY_MAGIC, 1, P.RT_ERROR, 9, 9)
    hdr = P.read_reply_header(5, 4096, 100, True)
    assert P.STRUCTURED.unpack_from(hdr)[2:] == (P.RT_OFFSET_DATA, 5, 108)
    assert struct.unpack_from(">Q", hdr, P.STRUCTURED.size) == (4096,)
    assert P.reply(3, 0, True) == P.structured_done(3)
