"""Metadata: versioned slots, torn writes, activity log, attach of file-backed disks."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from hastack_blockrepl import meta as M
from hastack_blockrepl.actlog import ActivityLog, extents
from hastack_blockrepl.disk import AttachError, attach, internal_layout
from hastack_common.config_blockrepl import AL_EXTENT, BLOCK, bitmap_bytes, metadata_bytes


def test_slot_roundtrip_and_corruption() -> None:
    blk = M.pack_slot(M.SB_MAGIC, 7, b"hello")
    assert len(blk) == BLOCK and M.unpack_slot(M.SB_MAGIC, blk) == (7, b"hello")
    assert M.unpack_slot(M.AL_MAGIC, blk) is None
    torn = blk[:30] + b"X" + blk[31:]
    assert M.unpack_slot(M.SB_MAGIC, torn) is None
    assert M.unpack_slot(M.SB_MAGIC, bytes(BLOCK)) is None


def test_newer_format_refused_with_advice() -> None:
    body = M.Super(node_id=0, size=1 << 20).to_json().replace(b'"version": 1', b'"version": 9')
    with pytest.raises(M.MetadataError, match="upgrade"):
        M.Super.from_json(body)


def test_older_reader_fields_ignored_and_defaults_filled() -> None:
    sb = M.Super.from_json(b'{"node_id": 1, "size": 4096, "future_field": 3}')
    assert sb.current == M.DAY0 and sb.disk_state == M.UP_TO_DATE


def test_a_consistent_disk_reads_as_outdated_to_a_reader_that_predates_the_state() -> None:
    """Consistent is stored as Outdated plus a flag: this release reads it back; an older one,
    which drops fields it does not know, reads Outdated (its safe side: never a sync source
    against an UpToDate peer, never Primary without --force)."""
    body = M.Super(node_id=0, size=1 << 20, disk_state=M.CONSISTENT).to_json()
    assert M.Super.from_json(body).disk_state == M.CONSISTENT
    older = {k: v for k, v in json.loads(body).items() if k != "consistent"}
    assert older["disk_state"] == M.OUTDATED
    assert M.Super.from_json(json.dumps(older).encode()).disk_state == M.OUTDATED
    for state in (M.UP_TO_DATE, M.OUTDATED, M.INCONSISTENT):
        assert M.Super.from_json(M.Super(node_id=0, size=1 << 20, disk_state=state).to_json()).disk_state == state


def test_store_alternates_slots_and_survives_torn_update(tmp_path: Path) -> None:
    f = tmp_path / "md"
    f.write_bytes(bytes(metadata_bytes(1 << 20)))
    fd = os.open(f, os.O_RDWR)
    try:
        st = M.MetaStore(fd, 0, 1 << 20)
        sb = M.Super(node_id=0, size=1 << 20)
        st.save_super(sb)
        sb.current = 0x1234
        st.save_super(sb)
        # tear the newest slot: the previous one is used
        os.pwrite(fd, b"garbage", (st.sb_seq % 2) * BLOCK + 20)
        again = M.MetaStore(fd, 0, 1 << 20).load_super()
        assert again is not None and again.current == M.DAY0
        st.save_al([1, 5, 9])
        assert M.MetaStore(fd, 0, 1 << 20).load_al() == [1, 5, 9]
        st.save_bitmap(1, b"\xff\x01")
        assert st.load_bitmap(1)[:3] == b"\xff\x01\0" and len(st.load_bitmap(1)) == bitmap_bytes(1 << 20)
    finally:
        os.close(fd)


def test_peer_slots_allocated_once() -> None:
    sb = M.Super(node_id=0, size=4096)
    assert sb.slot(2)[0] == 0 and sb.slot(1)[0] == 1 and sb.slot(2)[0] == 0
    with pytest.raises(M.MetadataError):
        sb.slot(3)


def test_uuid_history_rotation() -> None:
    sb = M.Super(node_id=0, size=4096)
    sb.rotate_history(M.DAY0)
    assert sb.history == [0, 0]
    sb.rotate_history(10)
    sb.rotate_history(20)
    sb.rotate_history(20)
    assert sb.history == [20, 10]
    u = M.new_uuid()
    assert u not in (0, M.DAY0) and u & 1 == 0


def test_attach_internal_creates_then_reopens(tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(40 << 20))
    b, sb, created = attach(str(disk), "internal", 3, None)
    _base, room = internal_layout(40 << 20)
    assert created and b.size == room and room + metadata_bytes(40 << 20) <= 40 << 20
    sb.current = 0x5550
    b.store.save_super(sb)
    b.close()
    b2, sb2, created2 = attach(str(disk), "internal", 3, None)
    assert not created2 and sb2.current == 0x5550
    b2.close()
    with pytest.raises(AttachError, match="belongs to node 3"):
        attach(str(disk), "internal", 4, None)
    with pytest.raises(AttachError, match="cannot open"):
        attach(str(tmp_path / "missing"), "internal", 0, None)


def test_attach_external(tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(8 << 20))
    b, _sb, created = attach(str(disk), str(tmp_path / "md"), 0, None)
    assert created and b.size == 8 << 20 and (tmp_path / "md").stat().st_size == metadata_bytes(8 << 20)
    b.close()


def test_activity_log_lru_and_in_flight() -> None:
    al = ActivityLog(2)
    assert list(extents(AL_EXTENT - 1, 2)) == [0, 1] and list(extents(0, 0)) == []
    assert al.add({0, 1}) == []
    al.begin(extents(0, 1))  # extent 0 busy
    assert al.missing(2 * AL_EXTENT, 1) == {2}
    assert al.covers(extents(0, 2 * AL_EXTENT)) and not al.covers(extents(AL_EXTENT, AL_EXTENT + 1))  # 1 yes, 2 no
    assert al.add({2}) == [1]  # the idle one goes
    assert not al.covers(extents(AL_EXTENT, 1)) and al.covers(extents(2 * AL_EXTENT, AL_EXTENT))
    assert set(al.active()) == {0, 2}
    al.end(extents(0, 1))
    assert al.in_flight() == 0


def test_activity_log_keeps_a_write_batchs_extents_busy() -> None:
    """A write batch holds one reference per extent it touches: none of them can be evicted
    until it ends, and an extent not in the log sends the batch to the per-request path."""
    al = ActivityLog(2)
    al.add({0, 1})
    assert al.covers((0, 1)) and not al.covers((0, 2))
    al.begin((0, 1))
    assert al.in_flight() == 2
    assert al.add({2}) == [] and set(al.active()) == {0, 1, 2}  # every slot busy: nothing evicted
    al.end((0, 1))
    assert al.in_flight() == 0
    assert al.add({3}) == [0]


def test_attached_metadata_is_written_durably_without_flushing_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metadata goes through an O_DSYNC descriptor (durable on return, its own range only):
    an activity-log update must not fdatasync the whole backing file."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    backing, _, _ = attach(str(img), "internal", 0, None)
    try:
        st = backing.store
        assert st.sync_fd is not None and fcntl.fcntl(st.sync_fd, fcntl.F_GETFL) & os.O_DSYNC
        synced: list[int] = []
        monkeypatch.setattr(M.os, "fdatasync", synced.append)
        st.save_al([3, 4])
        assert synced == [] and M.MetaStore(backing.fd, st.base, st.size).load_al() == [3, 4]
    finally:
        backing.close()
