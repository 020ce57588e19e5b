"""DNS messages for the dns probe (RFC 1035), pure: build a query, parse a response.

Small on purpose: one question, answers rendered as the text an administrator writes in
``spec.probes[].dns.expect`` (A "10.0.0.1", MX "10 mail.example.", TXT "v=spf1 -all").
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class DnsWireError(ValueError):
    """A malformed DNS message."""


@dataclass(frozen=True)
class Response:
    id: int
    rcode: str
    truncated: bool
    answers: tuple[tuple[str, str, str], ...]  # (owner, type, rdata text)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        raw = label.encode("idna")
        if len(raw) > 63:
            raise DnsWireError(f"label {label!r} longer than 63 bytes")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(qid: int, name: str, rtype: str) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD set
    return header + encode_name(name) + struct.pack("!HH", TYPES[rtype], 1)


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds compression loops
        if pos >= len(msg):
            raise DnsWireError("name runs past the end of the message")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise DnsWireError("truncated compression pointer")
            if end < 0:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
            continue
        if n == 0:
            return ".".join(labels) + ".", (end if end >= 0 else pos + 1)
        labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    raise DnsWireError("too many labels or a compression loop")


def _rdata(msg: bytes, rtype: int, start: int, length: int) -> str:
    data = msg[start : start + length]
    if rtype == 1 and length == 4:
        return str(ipaddress.IPv4Address(data))
    if rtype == 28 and length == 16:
        return str(ipaddress.IPv6Address(data))
    if rtype in (2, 5, 12):
        return read_name(msg, start)[0]
    if rtype == 15:
        return f"{struct.unpack('!H', data[:2])[0]} {read_name(msg, start + 2)[0]}"
    if rtype == 33:
        prio, weight, port = struct.unpack("!HHH", data[:6])
        return f"{prio} {weight} {port} {read_name(msg, start + 6)[0]}"
    if rtype == 16:
        parts, i = [], 0
        while i < len(data):
            n = data[i]
            parts.append(data[i + 1 : i + 1 + n].decode("utf-8", "replace"))
            i += 1 + n
        return "".join(parts)
    if rtype == 6:
        mname, p = read_name(msg, start)
        rname, p = read_name(msg, p)
        nums = struct.unpack("!IIIII", msg[p : p + 20])
        return " ".join([mname, rname, *map(str, nums)])
    return data.hex()


def parse_response(msg: bytes) -> Response:
    if len(msg) < 12:
        raise DnsWireError(f"response of {len(msg)} bytes is shorter than a DNS header")
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if not flags & 0x8000:
        raise DnsWireError("message is a query, not a response")
    pos = 12
    try:
        for _ in range(qd):
            pos = read_name(msg, pos)[1] + 4
        answers = []
        for _ in range(an):
            owner, pos = read_name(msg, pos)
            rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
            pos += 10
            if pos + rdlen > len(msg):
                raise DnsWireError("record data runs past the end of the message")
            answers.append((owner, TYPE_NAMES.get(rtype, str(rtype)), _rdata(msg, rtype, pos, rdlen)))
            pos += rdlen
    except (struct.error, IndexError, ValueError) as exc:
        raise DnsWireError(f"malformed response: {exc}") from exc
    return Response(qid, RCODES.get(flags & 0xF, str(flags & 0xF)), bool(flags & 0x0200), tuple(answers))
