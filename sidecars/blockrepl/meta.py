"""On-disk metadata: superblock (generation identifiers, disk state), activity log, per-peer bitmaps.

Layout of the metadata area (internal: the last ``metadata_bytes(size)`` bytes of the backing
device; external: a file of its own), in 4 KiB blocks::

    0, 1   superblock slots A and B      (highest valid sequence number wins)
    2, 3   activity-log slots A and B    (idem)
    4 ..   one dirty bitmap per peer slot, bitmap_bytes(size) each

A slot is ``magic(8) version(u32) seq(u64) length(u32) body crc32(u32)``; the body is JSON
(superblock) or packed extent numbers (activity log). Updates go to the older slot and are
fdatasync'ed, so a crash mid-update leaves the previous slot valid. Format version 1; a newer
reader accepts every older version, and a reader refuses a newer one with a clear error.
"""

from __future__ import annotations

import json
import os
import random
import struct
import threading
import zlib
from dataclasses import asdict, dataclass, field

from hastack_common.config_blockrepl import BLOCK, MAX_PEERS, bitmap_bytes

FORMAT_VERSION = 1
SB_MAGIC = b"HSBRSUPR"
AL_MAGIC = b"HSBRACTL"
HDR = struct.Struct(">8sIQI")
DAY0 = 4  # DRBD's UUID_JUST_CREATED: a volume nobody has written yet
AL_SLOTS = 1000  # extents in the activity log (4 MiB each: up to ~4 GiB of "hot" area)

UP_TO_DATE, INCONSISTENT, OUTDATED, DISKLESS = "UpToDate", "Inconsistent", "Outdated", "Diskless"
# DRBD's Consistent: data that was UpToDate when its node went down uncleanly (a reboot lost the
# page cache); whether it is UpToDate or Outdated is decided when a peer connects.
CONSISTENT = "Consistent"


class MetadataError(Exception):
    """The metadata area is missing, corrupt, from another volume, or from a newer format."""


def new_uuid(rng: random.Random | None = None) -> int:
    """A random 64-bit generation identifier, never 0 nor DAY0, lowest bit clear."""
    while True:
        u = (rng or random.SystemRandom()).getrandbits(64) & ~1
        if u not in (0, DAY0):
            return u


@dataclass
class PeerSlot:
    node_id: int
    bitmap_uuid: int = 0


@dataclass
class Super:
    node_id: int
    size: int
    current: int = DAY0
    history: list[int] = field(default_factory=lambda: [0, 0])
    disk_state: str = UP_TO_DATE
    primary: bool = False  # was Primary when last written: an unclean start means a crashed primary
    clean: bool = True  # False while the process runs; True after an orderly stop
    primary_since: float = 0.0
    boot_id: str = ""  # the kernel boot it last ran under: an unclean stop across a reboot lost the page cache
    peers: list[PeerSlot] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def slot(self, node_id: int) -> tuple[int, PeerSlot]:
        """Index and slot of a peer, allocating a free slot the first time a peer is seen."""
        for i, p in enumerate(self.peers):
            if p.node_id == node_id:
                return i, p
        if len(self.peers) >= MAX_PEERS:
            raise MetadataError(f"no free peer slot for node {node_id}: slots hold {[p.node_id for p in self.peers]}")
        self.peers.append(PeerSlot(node_id))
        return len(self.peers) - 1, self.peers[-1]

    def to_json(self) -> bytes:
        d = asdict(self)
        if self.disk_state == CONSISTENT:  # stored as Outdated + a flag: a replica that predates
            d["disk_state"], d["consistent"] = OUTDATED, True  # the state reads its safe side
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Super:
        d = json.loads(body)
        if d.get("version", 1) > FORMAT_VERSION:
            raise MetadataError(
                f"metadata format {d['version']} is newer than this blockrepl understands "
                f"({FORMAT_VERSION}); "
                "upgrade this replica"
            )
        d["peers"] = [PeerSlot(**p) for p in d.get("peers", [])]
        if d.pop("consistent", False) and d.get("disk_state") == OUTDATED:
            d["disk_state"] = CONSISTENT
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def rotate_history(self, uuid: int) -> None:
        if uuid and uuid != DAY0 and uuid not in self.history:
            self.history = [uuid, self.history[0]]


def boot_id() -> str:
    """This kernel's boot id: a process restart keeps it (and the page cache), a reboot does not.
    ``HASTACK_BLOCKREPL_BOOT_ID`` stands in for it (the tests' way of simulating a reboot)."""
    forced = os.environ.get("HASTACK_BLOCKREPL_BOOT_ID")
    if forced:
        return forced
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def pack_slot(magic: bytes, seq: int, body: bytes) -> bytes:
    if HDR.size + len(body) + 4 > BLOCK:
        raise MetadataError(f"metadata record of {len(body)} bytes does not fit a {BLOCK}-byte slot")
    rec = HDR.pack(magic, FORMAT_VERSION, seq, len(body)) + body
    return (rec + struct.pack(">I", zlib.crc32(rec))).ljust(BLOCK, b"\0")


def unpack_slot(magic: bytes, block: bytes) -> tuple[int, bytes] | None:
    """``(seq, body)`` of a valid slot, or None for an empty, torn or foreign one."""
    if len(block) < HDR.size:
        return None
    m, version, seq, length = HDR.unpack_from(block)
    if m != magic or HDR.size + length + 4 > len(block):
        return None
    rec = block[: HDR.size + length]
    (crc,) = struct.unpack_from(">I", block, HDR.size + length)
    if zlib.crc32(rec) != crc:
        return None
    if version > FORMAT_VERSION:
        raise MetadataError(f"metadata slot format {version} is newer than {FORMAT_VERSION}; upgrade this replica")
    return seq, bytes(block[HDR.size : HDR.size + length])


def pack_al(extents: list[int]) -> bytes:
    return struct.pack(f">H{len(extents)}I", len(extents), *extents)


def unpack_al(body: bytes) -> list[int]:
    (n,) = struct.unpack_from(">H", body)
    return list(struct.unpack_from(f">{n}I", body, 2))


class MetaStore:
    """Synchronous reads and writes of the metadata area (callers run them off the event loop).

    With ``sync_fd`` (the same file or device opened with O_DSYNC) every metadata write is
    durable when it returns and only its own range is written back (plus a cache flush):
    an activity-log transaction no longer writes back every dirty data page of a backing
    file that also holds the metadata. Callers that need *data* durable flush it themselves
    (Engine.persist_sync). Without it, writes are followed by ``fdatasync`` of ``fd``.
    Saves are serialised (a lock): a Secondary's activity log is saved from the event loop
    while a worker thread may be persisting bitmaps and the superblock.
    """

    def __init__(self, fd: int, base: int, size: int, sync_fd: int | None = None) -> None:
        self.fd, self.base, self.size, self.sync_fd = fd, base, size, sync_fd
        self.lock = threading.Lock()
        self.sb_seq = 0
        self.al_seq = 0
        self.bm_len = bitmap_bytes(size)

    def _best(self, first_block: int, magic: bytes) -> tuple[int, bytes] | None:
        found = []
        for i in (0, 1):
            blk = os.pread(self.fd, BLOCK, self.base + (first_block + i) * BLOCK)
            got = unpack_slot(magic, blk)
            if got:
                found.append(got)
        return max(found) if found else None

    def load_super(self) -> Super | None:
        got = self._best(0, SB_MAGIC)
        if got is None:
            return None
        self.sb_seq = got[0]
        return Super.from_json(got[1])

    def save_super(self, sb: Super, sync: bool = True) -> None:
        with self.lock:
            self.sb_seq += 1
            self._write(pack_slot(SB_MAGIC, self.sb_seq, sb.to_json()), self.base + (self.sb_seq % 2) * BLOCK, sync)

    def load_al(self) -> list[int]:
        got = self._best(2, AL_MAGIC)
        if got is None:
            return []
        self.al_seq = got[0]
        return unpack_al(got[1])

    def save_al(self, extents: list[int], sync: bool = True) -> None:
        with self.lock:
            self.al_seq += 1
            self._write(pack_slot(AL_MAGIC, self.al_seq, pack_al(extents)), self.base + (2 + self.al_seq % 2) * BLOCK,
                        sync)  # fmt: skip

    def _write(self, data: bytes, offset: int, sync: bool) -> None:
        fd = self.fd if self.sync_fd is None else self.sync_fd
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        if sync and self.sync_fd is None:
            os.fdatasync(self.fd)

    def _bm_off(self, slot: int) -> int:
        return self.base + 4 * BLOCK + slot * self.bm_len

    def load_bitmap(self, slot: int) -> bytes:
        return os.pread(self.fd, self.bm_len, self._bm_off(slot))

    def save_bitmap(self, slot: int, data: bytes, sync: bool = True) -> None:
        with self.lock:
            self._write(data.ljust(self.bm_len, b"\0"), self._bm_off(slot), sync)

    def wipe(self) -> None:
        """Create-md: zero the headers and every bitmap (a fresh replica)."""
        os.pwrite(self.fd, bytes(4 * BLOCK), self.base)
        for slot in range(MAX_PEERS):
            os.pwrite(self.fd, bytes(self.bm_len), self._bm_off(slot))
        os.fdatasync(self.fd)
        self.sb_seq = self.al_seq = 0
