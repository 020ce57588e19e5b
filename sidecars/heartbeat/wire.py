"""The heartbeat datagram: a fixed header, three names and an HMAC-SHA256 over all of it.

::

    magic "HAHB" | version u8 | kind u8 (1 hb, 2 ack) | flags u8 (1 active, 2 eligible) | dead u8
    epoch u64 | seq u64 | ack_epoch u64 | ack_seq u64            (network byte order)
    cluster, src, dst: u8 length + UTF-8 bytes each
    mac: 32 bytes = HMAC-SHA256(secret, everything before it)

``dead`` (in an ack): the deadTime the acknowledging member promises for this sender, in units
of 250 ms, rounded down, at most 255 (0: not given -- a member older than this field sent it as
padding, so the field needs no new version). The promise makes online timing changes safe: the
sender's acknowledgement right ends at ``send time + promised deadTime - margin``, and the peer
declares the sender dead no earlier than ``receive time + promised deadTime`` for any ack it sent.

The boot epoch and sequence number are inside the MAC, so a forged or altered packet is
``bad_mac``; the membership core drops replays (``replay``, ``stale_epoch``). Decoding never
raises anything but :class:`BadPacket`, whose ``reason`` is the metric label.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from hastack_heartbeat.events import Packet

MAGIC = b"HAHB"
VERSION = 1
KINDS = {"hb": 1, "ack": 2}
KIND_NAMES = {v: k for k, v in KINDS.items()}
_HEADER = struct.Struct("!4sBBBBQQQQ")
DEAD_UNIT = 0.25
MAC_LEN = 32
MAX_PACKET = _HEADER.size + 3 * 256 + MAC_LEN
MIN_SECRET = 16
REASONS = ("truncated", "oversize", "bad_magic", "bad_version", "malformed", "bad_mac", "wrong_cluster",
           "unknown_sender", "misdirected", "replay", "stale_epoch")


class BadPacket(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET:
        raise ValueError(f"heartbeat secret is {len(secret)} bytes; it needs at least {MIN_SECRET} "
                         "(the operator generates 32 random bytes in the cluster's Secret)")
    return secret


def _name(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"name longer than 255 bytes: {text[:40]!r}...")
    return bytes([len(raw)]) + raw


def dead_code(seconds: float) -> int:
    """A promised deadTime as the wire carries it: rounded down, so never more than promised."""
    return max(0, min(255, int(seconds / DEAD_UNIT + 1e-9)))


def dead_seconds(code: int) -> float:
    return code * DEAD_UNIT


def encode(pkt: Packet, cluster: str, secret: bytes) -> bytes:
    flags = (1 if pkt.active else 0) | (2 if pkt.eligible else 0)
    body = _HEADER.pack(MAGIC, VERSION, KINDS[pkt.kind], flags, pkt.dead, pkt.epoch, pkt.seq,
                        pkt.ack_epoch, pkt.ack_seq)
    body += _name(cluster) + _name(pkt.src) + _name(pkt.dst)
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def decode(data: bytes, cluster: str, secret: bytes) -> Packet:
    if len(data) > MAX_PACKET:
        raise BadPacket("oversize", f"{len(data)} bytes")
    if len(data) < _HEADER.size + 3 + MAC_LEN:
        raise BadPacket("truncated", f"{len(data)} bytes")
    magic, version, kind, flags, dead, epoch, seq, ack_epoch, ack_seq = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadPacket("bad_magic")
    if version != VERSION:
        raise BadPacket("bad_version", f"version {version}, this heartbeat speaks {VERSION}")
    pos, names = _HEADER.size, []
    for _ in range(3):
        n = data[pos]
        if pos + 1 + n > len(data) - MAC_LEN:
            raise BadPacket("truncated", "name runs past the end")
        names.append(data[pos + 1:pos + 1 + n])
        pos += 1 + n
        if pos >= len(data):
            raise BadPacket("truncated", "no room for the next name")
    if len(data) - pos != MAC_LEN:
        raise BadPacket("truncated" if len(data) - pos < MAC_LEN else "malformed", "MAC length")
    want = hmac.new(secret, data[:pos], hashlib.sha256).digest()
    if not hmac.compare_digest(want, data[pos:]):
        raise BadPacket("bad_mac")
    if kind not in KIND_NAMES:
        raise BadPacket("malformed", f"kind {kind}")
    try:
        c, src, dst = (n.decode() for n in names)
    except UnicodeDecodeError as exc:
        raise BadPacket("malformed", "names are not UTF-8") from exc
    if c != cluster:
        raise BadPacket("wrong_cluster", c)
    return Packet(kind=KIND_NAMES[kind], src=src, dst=dst, epoch=epoch, seq=seq, active=bool(flags & 1),
                  eligible=bool(flags & 2), ack_epoch=ack_epoch, ack_seq=ack_seq, dead=dead)
