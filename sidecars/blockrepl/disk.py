"""The backing disk (DRBD's "attach"): data area, metadata area, sizes, I/O with error accounting."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from hastack_blockrepl.iozero import zero_range
from hastack_blockrepl.meta import SB_MAGIC, MetadataError, MetaStore, Super, unpack_slot
from hastack_common.config_blockrepl import BLOCK, MAX_PEERS, bitmap_bytes, metadata_bytes
from hastack_common.logs import kv

log = logging.getLogger(__name__)


class AttachError(Exception):
    """The backing disk cannot be attached; the message says what to fix."""


def device_size(fd: int) -> int:
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)


@dataclass
class Backing:
    fd: int
    md_fd: int
    size: int  # bytes of the data area (the volume)
    store: MetaStore
    path: str
    sync_fd: int | None = None  # the metadata's file or device again, O_DSYNC (MetaStore)

    def close(self) -> None:
        for fd in {self.fd, self.md_fd, self.sync_fd}:
            if fd is None:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


def internal_layout(backing: int) -> tuple[int, int]:
    """(metadata offset, largest volume size) for internal metadata on ``backing`` bytes.

    The metadata area is sized for the whole device and sits at a fixed distance from its
    end, so it is found again without knowing the volume size first.
    """
    md = metadata_bytes(backing, MAX_PEERS)
    base = (backing - md) // (1 << 20) * (1 << 20)
    return base, max(base, 0)


SCAN_LIMIT = 16 << 30  # how far below the expected place metadata is looked for (a grown device)


def find_moved(fd: int, base: int) -> int | None:
    """Offset of internal metadata left by a smaller device (it grew while we were down)."""
    mib = 1 << 20
    b = base - mib
    while b >= 0 and base - b <= SCAN_LIMIT:
        for slot in (0, 1):
            if unpack_slot(SB_MAGIC, os.pread(fd, BLOCK, b + slot * BLOCK)) is not None:
                return b
        b -= mib
    return None


def grow(backing: Backing, sb: Super, new_size: int | None) -> int:
    """Grow the volume into a larger backing device (DRBD's resize); returns the new size.

    Internal metadata moves to the new end (written and synced before anything else
    changes, so a crash leaves either layout valid); the new area, which holds the old
    metadata, is zeroed on every replica so the replicas stay identical without a resync.
    Blocking: run it in a thread.
    """
    total = device_size(backing.fd)
    store = backing.store
    if backing.md_fd == backing.fd:
        new_base, room = internal_layout(total)
    else:
        new_base, room = 0, total // BLOCK * BLOCK
    size = new_size or room
    if size % BLOCK or size < sb.size:
        raise AttachError(f"resize to {size} bytes refused: only growth to a multiple of {BLOCK} (now {sb.size})")
    if size > room:
        raise AttachError(f"{backing.path} holds {total} bytes: room for {room} bytes of volume, not {size}")
    if size == sb.size and new_base == store.base:
        return size
    old_end = store.base + 4 * BLOCK + MAX_PEERS * store.bm_len
    if backing.md_fd == backing.fd and store.base < new_base < old_end:
        raise AttachError(f"{backing.path} grew by less than its metadata area: grow it further, then resize")
    bitmaps = [store.load_bitmap(i) for i in range(MAX_PEERS)]
    if backing.md_fd != backing.fd and device_size(backing.md_fd) < metadata_bytes(size):
        os.ftruncate(backing.md_fd, metadata_bytes(size))
    new = MetaStore(backing.md_fd, new_base, size, backing.sync_fd)
    new.sb_seq, new.al_seq = store.sb_seq, store.al_seq
    for i, bm in enumerate(bitmaps):
        new.save_bitmap(i, bm[: new.bm_len], sync=False)
    new.save_al(store.load_al(), sync=False)
    old_size = sb.size
    sb.size = size
    new.save_super(sb)  # fdatasync: from here on the new layout is the one found at attach
    zero_range(backing.fd, old_size, size - old_size)
    os.fdatasync(backing.fd)
    backing.store, backing.size = new, size
    log.info("volume grown", extra=kv(path=backing.path, old=old_size, new=size))
    return size


def attach(path: str, metadata: str, node_id: int, want_size: int | None) -> tuple[Backing, Super, bool]:
    """Open the backing disk and its metadata; returns (backing, superblock, created)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise AttachError(f"cannot open backing disk {path}: {exc.strerror}") from exc
    md_fd: int | None = None
    sync_fd: int | None = None
    try:
        total = device_size(fd)
        if metadata == "internal":
            md_fd = fd
            base, room = internal_layout(total)
            size = want_size or room  # at creation; afterwards the metadata's size wins (it grows by resize)
            if size <= 0 or size > room:
                raise AttachError(
                    f"backing disk {path} has {total} bytes: room for a volume of {room} bytes with internal "
                    f"metadata, size {size} requested"
                )
        else:
            size = want_size or total // BLOCK * BLOCK
            if size > total:
                raise AttachError(f"backing disk {path} has {total} bytes, less than size {size}")
            md_fd = os.open(metadata, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if device_size(md_fd) < metadata_bytes(size):
                os.ftruncate(md_fd, metadata_bytes(size))
            base = 0
        sync_fd = os.open(path if metadata == "internal" else metadata, os.O_RDWR | os.O_DSYNC | os.O_CLOEXEC)
        store = MetaStore(md_fd, base, size, sync_fd)
        try:
            sb = store.load_super()
            if sb is None and metadata == "internal":
                moved = find_moved(fd, base)
                if moved is not None:
                    store = MetaStore(md_fd, moved, size, sync_fd)
                    sb = store.load_super()
                    log.warning("metadata found where it was before the device grew; run `resize` to use the "
                                "new space", extra=kv(path=path, offset=moved))  # fmt: skip
        except (MetadataError, ValueError) as exc:
            raise AttachError(f"metadata of {path} unusable: {exc}") from exc
        created = sb is None
        if sb is None:
            store.wipe()
            sb = Super(node_id=node_id, size=size)
            store.save_super(sb)
            log.info("created metadata", extra=kv(path=path, size=size, metadata=metadata))
        elif sb.node_id != node_id:
            raise AttachError(
                f"metadata on {path} belongs to node {sb.node_id}, not {node_id}: wrong disk, or wipe it to reuse"
            )
        elif sb.size > (room if metadata == "internal" else total):
            raise AttachError(f"metadata records a volume of {sb.size} bytes but {path} now holds only {total}")
        store.size, store.bm_len = sb.size, bitmap_bytes(sb.size)  # a grown disk is used after `resize`
        return Backing(fd, md_fd, sb.size, store, path, sync_fd), sb, created
    except BaseException:
        for f in {fd, md_fd, sync_fd} - {None}:
            os.close(f)  # type: ignore[arg-type]
        raise
