"""Replication frame codec (pure): mutual challenge-response auth, an HMAC on every frame.

Connection setup (no secret ever on the wire)::

    both -> HELLO  {"versions": [min, max], "node": id, "resource": name}  + 32-byte nonce
    both -> AUTH   HMAC(secret, "auth" | receiver nonce | sender nonce | sender id | resource)

Each side checks the peer's AUTH against its own nonce (fresh per connection: a replayed or
reflected AUTH fails). Then each direction uses its own key,
``HMAC(secret, "key" | sender id | nonce of lower id | nonce of higher id)``, and every frame is
``header | payload | MAC[:16]``. The header's sequence number must be exactly one more than
the previous frame's in that direction (replay, drop and reorder are detected). The protocol
version is the highest both support:

- version 1: ``HMAC-SHA256(key, header | payload)``;
- version 2: the GCM tag of ``AES-256-GCM(key, nonce = sequence number, plaintext = header,
  associated data = payload)`` (GMAC: the header, encrypted, and the payload are authenticated;
  nothing is sent encrypted, the receiver recomputes the tag). Sequence numbers never repeat
  under one key (keys are fresh per connection), so a nonce is never reused. About ten times
  cheaper than HMAC-SHA256 per MiB here, computed over the payload in place.
- version 3: as 2, and a replica acknowledges the replicated writes it handled from one socket
  read with one ACK_RECVS / ACK_WRITES frame listing their ids (8 bytes each) instead of a
  frame each.
- version 4: as 3, and a run of small plain writes that arrived together from the client is
  sent as one WRITES frame (payload: a write batch, ``fastpath.py``), acknowledged as one
  (ACK_RECV / ACK_WRITE / NACK with the batch's id): one MAC and one acknowledgement per batch.
- version 5: as 4, and a replica's STATE / UPDATE may say its disk is ``Consistent`` (its node
  restarted; docs/blockrepl.md). To an older peer such a replica says ``Outdated`` and decides
  as an Outdated one would, so both sides of a mixed pair reach the same decision.
- version 6: as 5, and a Primary tells each Secondary the id below which every replicated write
  is acknowledged by every peer it was sent to (its *settled* id: in the offset field of WRITES,
  or a SETTLED frame before other writes and with pings). A Secondary that loses its Primary
  marks the extents of the writes it took above that id out of sync with the other replicas:
  the Primary may have died with them on some replicas only (docs/blockrepl.md).

``HASTACK_BLOCKREPL_WIRE_MAX`` caps the version this replica offers (pin it during a rolling
update, or to test mixed versions).
"""

from __future__ import annotations

import hmac
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hastack_blockrepl import fastpath
from hastack_blockrepl.rxbuf import BIG, RxBuffer
from hastack_common.config_blockrepl import AL_EXTENT

MAGIC = 0x4842  # "HB"
HEADER = struct.Struct(">HBBIQQQ")  # magic, type, flags, length, seq, id, offset
MAC_LEN = 16
NONCE_LEN = 32
MAX_PAYLOAD = 33 << 20
VERSION_MIN, VERSION_MAX = 1, min(6, max(1, int(os.environ.get("HASTACK_BLOCKREPL_WIRE_MAX", "6") or 6)))
VERSION_ACK_LISTS = 3  # ACK_RECVS / ACK_WRITES
VERSION_BATCH = 4  # WRITES
VERSION_CONSISTENT = 5  # the Consistent disk state
VERSION_SETTLED = 6  # the Primary's settled id (WRITES offset, SETTLED)

HELLO, AUTH, STATE, BITMAP, DECIDE, ERROR = 1, 2, 3, 4, 5, 6
WRITE, TRIM, ZERO, FLUSH, ACK_RECV, ACK_WRITE, ACK_FLUSH, NACK = 10, 11, 12, 13, 14, 15, 16, 17
RD_REQ, RD_DATA = 18, 19
RS_REQ, RS_DATA, RS_SAME, RS_ACK, RS_DONE = 20, 21, 22, 23, 24
ACK_RECVS, ACK_WRITES = 25, 26  # version 3: the ids of many writes, one frame
WRITES = 27  # version 4: a write batch
SETTLED = 28  # version 6: every write with an id up to this frame's id reached every peer it was sent to
OV_REQ, OV_RES = 30, 31
PING, PONG, UPDATE, OUTDATE = 40, 41, 50, 51
RESIZE, RESIZED = 52, 53
NAMES = {v: k for k, v in list(globals().items()) if k.isupper() and isinstance(v, int) and 1 <= v <= 60}

F_FUA, F_LAST = 1, 2


def pack_ids(ids: list[int]) -> bytes:
    """The payload of ACK_RECVS / ACK_WRITES: the ids, 8 bytes each."""
    return struct.pack(f">{len(ids)}Q", *ids)


def unpack_ids(payload: bytes | memoryview) -> tuple[int, ...]:
    if len(payload) % 8:
        raise WireError(f"id list of {len(payload)} bytes is not a whole number of ids")
    return struct.unpack(f">{len(payload) // 8}Q", payload)


class WireError(Exception):
    """Malformed or unauthenticated replication traffic: close the connection."""


class AuthError(WireError):
    pass


@dataclass
class Frame:
    """One authenticated frame. ``payload`` may be a view of a receive buffer that is reused
    once the handler returns: a handler that keeps it must copy it (``rxbuf.stable`` tells)."""

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


def direction_key(secret: bytes, sender_id: int, ids_nonces: dict[int, bytes], version: int = 1) -> bytes:
    ordered = b"".join(ids_nonces[k] for k in sorted(ids_nonces))
    label = b"key" if version == 1 else b"key-gmac"  # never the same key under two algorithms
    return hmac.new(secret, label + struct.pack(">I", sender_id) + ordered, "sha256").digest()


Mac = Callable[[int, bytes | memoryview, bytes | memoryview], bytes]


def py_gmac(key: bytes) -> Mac:
    """The frame MAC of wire versions >= 2: AES-GCM's tag with the sequence number as the nonce,
    the payload as associated data and the header as the text (the reference of the compiled
    ``fastpath.Gmac``, which gives the same tags)."""
    gcm = AESGCM(key)

    def gmac(seq: int, hdr: bytes | memoryview, payload: bytes | memoryview) -> bytes:
        return gcm.encrypt(seq.to_bytes(12, "big"), hdr, payload if len(payload) else None)[-MAC_LEN:]

    return gmac


def frame_mac(key: bytes, version: int) -> Mac:
    """The frame MAC of a protocol version: ``mac(seq, header, payload) -> 16 bytes``."""
    if version >= 2:
        # compiled where built: the compiled paths then call it without the interpreter
        return fastpath.Gmac(key) if fastpath.Gmac is not None else py_gmac(key)
    base = hmac.new(key, digestmod="sha256")

    def hmac_sha256(seq: int, hdr: bytes | memoryview, payload: bytes | memoryview) -> bytes:
        m = base.copy()
        m.update(hdr)
        if len(payload):
            m.update(payload)
        return m.digest()[:MAC_LEN]

    return hmac_sha256


class Encoder:
    """Frames for one direction; returns buffers to send as they are (no payload copy)."""

    def __init__(self, key: bytes | None, version: int = VERSION_MAX) -> None:
        self.key, self.seq, self.version = key, 0, version
        self._mac = frame_mac(key, version) if key else None

    def set_key(self, key: bytes, version: int | None = None) -> None:
        self.key, self.version = key, version or self.version
        self._mac = frame_mac(key, self.version)

    @property
    def mac(self) -> Mac | None:
        """The frame MAC in use (None without a key), for the compiled paths."""
        return self._mac

    def encode(
        self, ftype: int, payload: bytes | memoryview = b"", *, flags: int = 0, id: int = 0, offset: int = 0
    ) -> list[bytes | memoryview]:
        self.seq += 1
        hdr = HEADER.pack(MAGIC, ftype, flags, len(payload), self.seq, id, offset)
        if self._mac is None:
            return [hdr, payload] if payload else [hdr]
        mac = self._mac(self.seq, hdr, payload)
        return [hdr, payload, mac] if payload else [hdr, mac]

    def json(self, ftype: int, obj: Any, **kw: int) -> list[bytes | memoryview]:
        return self.encode(ftype, json.dumps(obj, separators=(",", ":")).encode(), **kw)


class Decoder:
    """Parses and authenticates frames for one direction; raises on anything malformed.

    Used with a ``BufferedProtocol``: the socket reads into :meth:`get_buffer`, then
    :meth:`updated` yields the frames that are complete. A large payload is read straight
    into a buffer of its own; small frames are parsed in place (see rxbuf: payload views of
    the shared buffer are valid only while the frame is handled). :meth:`feed` takes bytes
    and yields frames with copied payloads (tests, simple clients).
    """

    def __init__(self, key: bytes | None, max_payload: int = MAX_PAYLOAD, version: int = VERSION_MAX) -> None:
        self.key, self.seq, self.max_payload, self.version = key, 0, max_payload, version
        self._mac = frame_mac(key, version) if key else None
        self.rx = RxBuffer()
        self._big_hdr = b""

    def set_key(self, key: bytes, version: int | None = None) -> None:
        self.key, self.version = key, version or self.version
        self._mac = frame_mac(key, self.version)

    @property
    def mac(self) -> Mac | None:
        """The frame MAC in use (None without a key), for the compiled paths."""
        return self._mac

    def get_buffer(self) -> memoryview:
        return self.rx.get_buffer()

    def feed(self, data: bytes) -> Iterator[Frame]:
        view, pos = memoryview(data), 0
        while pos < len(data):
            buf = self.get_buffer()
            n = min(len(buf), len(data) - pos)
            buf[:n] = view[pos : pos + n]
            pos += n
            for f in self.updated(n):
                f.payload = bytes(f.payload)
                yield f

    def _check(
        self, hdr: bytes | memoryview, body: memoryview, mac: bytes | memoryview
    ) -> tuple[int, int, int, int, int]:
        _, ftype, flags, _, seq, fid, offset = HEADER.unpack(hdr)
        if self._mac is not None and not hmac.compare_digest(self._mac(seq, hdr, body), mac):
            raise AuthError(f"frame {seq} failed its MAC check")
        if seq != self.seq + 1:
            raise WireError(f"frame sequence {seq} after {self.seq}: replayed, lost or reordered")
        self.seq = seq
        return ftype, flags, seq, fid, offset

    def updated(self, n: int) -> Iterator[Frame]:
        self.rx.updated(n)
        return self.frames()

    def take_writes(self, ftype: int, size: int, fd: int, table: dict[int, int]) -> tuple[Any, ...] | None:
        """The compiled path for the frames a Secondary gets most: the whole WRITES frames of
        type ``ftype`` at the head of the buffer, authenticated, checked and written to ``fd``
        (``fastpath.rx_writes``) while every extent they touch is in the activity log's
        ``table``. Returns ``(ids, extents, settled, failed)`` and moves past them; None when
        there is no compiled path. :meth:`frames` takes the rest (and reports any error)."""
        rx = self.rx
        if fastpath.rx_writes is None or rx.big is not None:
            return None
        pos, self.seq, ids, exts, settled, failed = fastpath.rx_writes(
            rx.buf, rx.start, rx.end, ftype, self.seq, self._mac, size, fd, table, AL_EXTENT
        )
        rx.start = pos
        return ids, exts, settled, failed

    def take_acks(self, a: int, b: int) -> list[int] | None:
        """The compiled path for what a Primary receives most: the ids of the whole
        acknowledgement frames (types ``a`` or ``b``, id lists) at the head of the buffer,
        authenticated; moves past them. None when there is no compiled path."""
        rx = self.rx
        if fastpath.rx_acks is None or rx.big is not None:
            return None
        rx.start, self.seq, ids = fastpath.rx_acks(rx.buf, rx.start, rx.end, a, b, self.seq, self._mac)
        return ids

    def frames(self) -> Iterator[Frame]:
        """The complete frames in the buffer (a large one once all of it is here)."""
        rx = self.rx
        if rx.big is not None:
            if not rx.big_done():
                return
            big = rx.take_big()
            maclen = MAC_LEN if self._mac else 0
            body = big[: len(big) - maclen]
            ftype, flags, seq, fid, offset = self._check(self._big_hdr, body, big[len(big) - maclen :])
            yield Frame(ftype, flags, seq, fid, offset, body)
        buf, mv = rx.buf, rx.mv
        while rx.end - rx.start >= HEADER.size:
            pos = rx.start
            maclen = MAC_LEN if self._mac else 0
            magic, _, _, length, _, _, _ = HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                raise WireError(f"bad frame magic {magic:#x}")
            if length > self.max_payload:
                raise WireError(f"frame payload of {length} bytes exceeds {self.max_payload}")
            total = HEADER.size + length + maclen
            if rx.end - pos < total:
                if length >= BIG:
                    self._big_hdr = bytes(mv[pos : pos + HEADER.size])
                    rx.start_big(HEADER.size, length + maclen)
                else:
                    rx.ensure_room(total)
                return
            hdr = mv[pos : pos + HEADER.size]
            body = mv[pos + HEADER.size : pos + HEADER.size + length]
            ftype, flags, seq, fid, offset = self._check(hdr, body, mv[pos + total - maclen : pos + total])
            rx.start = pos + total
            yield Frame(ftype, flags, seq, fid, offset, body)
