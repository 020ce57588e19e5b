"""Replication frame codec (pure): mutual challenge-response auth, an HMAC on every frame.

Connection setup (no secret ever on the wire)::

    both -> HELLO  {"versions": [min, max], "node": id, "resource": name}  + 32-byte nonce
    both -> AUTH   HMAC(secret, "auth" | receiver nonce | sender nonce | sender id | resource)

Each side checks the peer's AUTH against its own nonce (fresh per connection: a replayed or
reflected AUTH fails). Then each direction uses its own key,
``HMAC(secret, "key" | sender id | nonce of lower id | nonce of higher id)``, and every frame is
``header | payload | HMAC-SHA256(key, header | payload)[:16]``. The header's sequence number
must be exactly one more than the previous frame's in that direction (replay, drop and
reorder are detected). The protocol version is the highest both support.
"""

from __future__ import annotations

import hmac
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAGIC = 0x4842  # "HB"
HEADER = struct.Struct(">HBBIQQQ")  # magic, type, flags, length, seq, id, offset
MAC_LEN = 16
NONCE_LEN = 32
MAX_PAYLOAD = 33 << 20
VERSION_MIN, VERSION_MAX = 1, 1

HELLO, AUTH, STATE, BITMAP, DECIDE, ERROR = 1, 2, 3, 4, 5, 6
WRITE, TRIM, ZERO, FLUSH, ACK_RECV, ACK_WRITE, ACK_FLUSH, NACK = 10, 11, 12, 13, 14, 15, 16, 17
RD_REQ, RD_DATA = 18, 19
RS_REQ, RS_DATA, RS_SAME, RS_ACK, RS_DONE = 20, 21, 22, 23, 24
OV_REQ, OV_RES = 30, 31
PING, PONG, UPDATE, OUTDATE = 40, 41, 50, 51
RESIZE, RESIZED = 52, 53
NAMES = {v: k for k, v in list(globals().items()) if k.isupper() and isinstance(v, int) and 1 <= v <= 60}

F_FUA, F_LAST = 1, 2


class WireError(Exception):
    """Malformed or unauthenticated replication traffic: close the connection."""


class AuthError(WireError):
    pass


@dataclass
class Frame:
    type: int
    flags: int
    seq: int
    id: int
    offset: int
    payload: bytes | memoryview

    def json(self) -> Any:
        try:
            return json.loads(bytes(self.payload))
        except ValueError as exc:
            raise WireError(f"{NAMES.get(self.type, self.type)} frame carries invalid JSON") from exc


def hello_payload(node_id: int, resource: str, nonce: bytes) -> bytes:
    meta = json.dumps({"versions": [VERSION_MIN, VERSION_MAX], "node": node_id, "resource": resource}).encode()
    return nonce + meta


def parse_hello(payload: bytes | memoryview) -> tuple[bytes, dict[str, Any]]:
    if len(payload) < NONCE_LEN + 2:
        raise WireError("HELLO too short")
    nonce = bytes(payload[:NONCE_LEN])
    try:
        meta = json.loads(bytes(payload[NONCE_LEN:]))
        int(meta["node"])
        _lo, _hi = (int(v) for v in meta["versions"])
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"malformed HELLO: {exc}") from exc
    return nonce, meta


def negotiate(peer_versions: list[int]) -> int:
    lo, hi = max(VERSION_MIN, peer_versions[0]), min(VERSION_MAX, peer_versions[1])
    if lo > hi:
        raise WireError(
            f"no common protocol version: this replica speaks {VERSION_MIN}..{VERSION_MAX}, "
            f"the peer {peer_versions[0]}..{peer_versions[1]}; upgrade the older replica"
        )
    return hi


def auth_response(secret: bytes, receiver_nonce: bytes, sender_nonce: bytes, sender_id: int, resource: str) -> bytes:
    msg = b"auth" + receiver_nonce + sender_nonce + struct.pack(">I", sender_id) + resource.encode()
    return hmac.new(secret, msg, "sha256").digest()


def check_auth(secret: bytes, my_nonce: bytes, peer_nonce: bytes, peer_id: int, resource: str, got: bytes) -> None:
    if my_nonce == peer_nonce:
        raise AuthError("peer echoed our nonce (reflection)")
    want = auth_response(secret, my_nonce, peer_nonce, peer_id, resource)
    if not hmac.compare_digest(want, bytes(got)):
        raise AuthError("peer failed authentication (wrong shared secret?)")


def direction_key(secret: bytes, sender_id: int, ids_nonces: dict[int, bytes]) -> bytes:
    ordered = b"".join(ids_nonces[k] for k in sorted(ids_nonces))
    return hmac.new(secret, b"key" + struct.pack(">I", sender_id) + ordered, "sha256").digest()


class Encoder:
    """Frames for one direction; returns buffers for ``transport.writelines`` (no payload copy)."""

    def __init__(self, key: bytes | None) -> None:
        self.key, self.seq = key, 0
        self._mac = hmac.new(key, digestmod="sha256") if key else None

    def set_key(self, key: bytes) -> None:
        self.key = key
        self._mac = hmac.new(key, digestmod="sha256")

    def encode(
        self, ftype: int, payload: bytes | memoryview = b"", *, flags: int = 0, id: int = 0, offset: int = 0
    ) -> list[bytes | memoryview]:
        self.seq += 1
        hdr = HEADER.pack(MAGIC, ftype, flags, len(payload), self.seq, id, offset)
        if self._mac is None:
            return [hdr, payload]
        m = self._mac.copy()
        m.update(hdr)
        m.update(payload)
        return [hdr, payload, m.digest()[:MAC_LEN]] if payload else [hdr, m.digest()[:MAC_LEN]]

    def json(self, ftype: int, obj: Any, **kw: int) -> list[bytes | memoryview]:
        return self.encode(ftype, json.dumps(obj, separators=(",", ":")).encode(), **kw)


class Decoder:
    """Parses and authenticates frames for one direction; raise on anything malformed.

    Incoming chunks are kept in a list and joined once a whole frame is there (one copy per
    frame, whatever the number of socket reads); payloads are memoryviews of that buffer.
    """

    def __init__(self, key: bytes | None, max_payload: int = MAX_PAYLOAD) -> None:
        self.key, self.seq, self.max_payload = key, 0, max_payload
        self._mac = hmac.new(key, digestmod="sha256") if key else None
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = HEADER.size

    def set_key(self, key: bytes) -> None:
        self.key = key
        self._mac = hmac.new(key, digestmod="sha256")

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._chunks.append(data)
        self._have += len(data)
        if self._have < self._need:
            return
        buf = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        mv = memoryview(buf)
        pos, end = 0, len(buf)
        try:
            while end - pos >= HEADER.size:
                maclen = MAC_LEN if self._mac else 0
                magic, ftype, flags, length, seq, fid, offset = HEADER.unpack_from(buf, pos)
                if magic != MAGIC:
                    raise WireError(f"bad frame magic {magic:#x}")
                if length > self.max_payload:
                    raise WireError(f"frame payload of {length} bytes exceeds {self.max_payload}")
                fend = pos + HEADER.size + length + maclen
                if end < fend:
                    break
                body = mv[pos + HEADER.size : pos + HEADER.size + length]
                if self._mac is not None:
                    m = self._mac.copy()
                    m.update(mv[pos : pos + HEADER.size])
                    m.update(body)
                    if not hmac.compare_digest(m.digest()[:MAC_LEN], buf[fend - MAC_LEN : fend]):
                        raise AuthError(f"frame {seq} failed its HMAC check")
                if seq != self.seq + 1:
                    raise WireError(f"frame sequence {seq} after {self.seq}: replayed, lost or reordered")
                self.seq = seq
                pos = fend
                yield Frame(ftype, flags, seq, fid, offset, body)
        finally:
            rest = buf[pos:]
            self._chunks = [rest] if rest else []
            self._have = len(rest)
            self._need = HEADER.size
            if len(rest) >= HEADER.size:
                length = HEADER.unpack_from(rest)[3]
                if length <= self.max_payload:
                    self._need = HEADER.size + length + (MAC_LEN if self._mac else 0)
