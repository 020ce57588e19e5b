"""The backing disk (DRBD's "attach"): data area, metadata area, sizes, I/O with error accounting."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from hastack_blockrepl.meta import MetadataError, MetaStore, Super
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

    def close(self) -> None:
        for fd in {self.fd, self.md_fd}:
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


def attach(path: str, metadata: str, node_id: int, want_size: int | None) -> tuple[Backing, Super, bool]:
    """Open the backing disk and its metadata; returns (backing, superblock, created)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise AttachError(f"cannot open backing disk {path}: {exc.strerror}") from exc
    try:
        total = device_size(fd)
        if metadata == "internal":
            md_fd = fd
            base, room = internal_layout(total)
            size = want_size or room
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
        store = MetaStore(md_fd, base, size)
        try:
            sb = store.load_super()
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
        elif sb.size > size:
            raise AttachError(f"metadata records a volume of {sb.size} bytes but {path} now holds only {size}")
        store.size, store.bm_len = sb.size, bitmap_bytes(sb.size)  # a grown disk is used after `resize`
        return Backing(fd, md_fd, sb.size, store, path), sb, created
    except BaseException:
        os.close(fd)
        raise
