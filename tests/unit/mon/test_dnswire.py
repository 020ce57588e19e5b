from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_mon.dnswire import DnsWireError, build_query, encode_name, parse_response


def answer(qid: int, name: str, rtype: int, rdata: bytes, rcode: int = 0) -> bytes:
    q = build_query(qid, name, "A")
    header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, 1, 0, 0)
    rr = b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata
    return header + q[12:] + rr


def test_query_layout() -> None:
    q = build_query(0x1234, "web.example.", "AAAA")
    assert q[:2] == b"\x12\x34" and q[2:4] == b"\x01\x00"
    assert q[12:] == b"\x03web\x07example\x00" + b"\x00\x1c\x00\x01"


@pytest.mark.parametrize(
    ("rtype", "rdata", "text"),
    [
        (1, bytes([10, 1, 2, 3]), "10.1.2.3"),
        (28, bytes(15) + b"\x01", "::1"),
        (5, encode_name("a.example"), "a.example."),
        (15, b"\x00\x0a" + b"\xc0\x0c", "10 web.example."),  # compressed pointer to the question
        (16, b"\x05hello\x06 world", "hello world"),
        (33, struct.pack("!HHH", 1, 5, 80) + encode_name("t.example"), "1 5 80 t.example."),
    ],
)
def test_answers(rtype: int, rdata: bytes, text: str) -> None:
    r = parse_response(answer(7, "web.example", rtype, rdata))
    assert r.id == 7 and r.rcode == "NOERROR"
    assert r.answers[0][0] == "web.example." and r.answers[0][2] == text


def test_rcode_and_errors() -> None:
    assert parse_response(answer(1, "x", 1, bytes(4), rcode=3)).rcode == "NXDOMAIN"
    with pytest.raises(DnsWireError, match="shorter than a DNS header"):
        parse_response(b"\x00")
    with pytest.raises(DnsWireError, match="not a response"):
        parse_response(build_query(1, "x", "A"))
    loop = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c"
    with pytest.raises(DnsWireError, match="compression loop"):
        parse_response(loop)


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_else(data: bytes) -> None:
    try:
        parse_response(data)
    except DnsWireError:
        pass
