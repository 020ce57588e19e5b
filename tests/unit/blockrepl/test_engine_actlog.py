"""The activity log's promise on the Primary: every write not yet durable on the local disk
lies in an extent the log lists. Writes sit in the page cache, so an extent may leave the
log only after an ``fdatasync`` of the data: a node that loses power would otherwise come
back with blocks missing that no bitmap and no log names (silently different from its peer).

Real backing file, real metadata, the engine's own transaction; ``os.fdatasync`` and the
activity-log save are observed (recorded, then done) to check their order.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hastack_blockrepl import engine as E
from hastack_blockrepl import fastpath
from hastack_blockrepl.actlog import ActivityLog
from hastack_blockrepl.disk import attach
from hastack_blockrepl.metrics import Metrics
from hastack_common.config_blockrepl import AL_EXTENT, parse
from hastack_common.ctlsock import EventBus

SIZE = 64 << 20


def _engine(tmp_path: Path, peers: int = 1) -> E.Engine:
    img = tmp_path / "disk.img"
    if not img.exists():
        with open(img, "wb") as f:
            f.truncate(SIZE + (4 << 20))
    cfg = parse({"resource": "r0", "nodeId": 0, "size": SIZE, "disk": {"path": str(img), "metadata": "internal"},
                 "nbd": {"socket": str(tmp_path / "nbd.sock")}, "controlSocket": str(tmp_path / "ctl.sock"),
                 "net": {"secretFile": str(tmp_path / "secret")},
                 "peers": [{"nodeId": 1, "address": "127.0.0.1:7789"}][:peers], "fencing": "dont-care"})  # fmt: skip
    backing, sb, _ = attach(str(img), "internal", 0, SIZE)
    eng = E.Engine(cfg, backing, sb, EventBus(), Metrics("r0"))
    eng.load()
    return eng


def _on_primary(tmp_path: Path, body: Callable[[E.Engine], Awaitable[None]]) -> None:
    """Run ``body`` on a Primary engine over a real backing file, then close the file."""

    async def run() -> None:
        eng = _engine(tmp_path)
        try:
            eng.role = E.PRIMARY
            await body(eng)
        finally:
            eng.backing.close()

    asyncio.run(run())


def _write(eng: E.Engine, offset: int) -> asyncio.Future[int]:
    done: asyncio.Future[int] = eng.loop.create_future()
    eng.write(offset, b"\x5a" * 4096, False, done.set_result)
    return done


def _observe(eng: E.Engine, monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Record the engine's data syncs and activity-log saves (then do them), in order."""
    real_sync, real_save = os.fdatasync, eng.backing.store.save_al

    def fdatasync(fd: int) -> None:
        calls.append("data-sync" if fd == eng.fd else "other-sync")
        real_sync(fd)

    def save_al(active: list[int], sync: bool = True) -> None:
        calls.append(f"save-al {sorted(active)}")
        real_save(active, sync=sync)

    monkeypatch.setattr(E.os, "fdatasync", fdatasync)
    monkeypatch.setattr(eng.backing.store, "save_al", save_al)


@pytest.mark.parametrize("evicting", [True, False])
def test_an_extent_leaves_the_activity_log_only_after_its_data_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evicting: bool
) -> None:
    calls: list[str] = []

    async def body(eng: E.Engine) -> None:
        eng.al = ActivityLog(2 if evicting else 8)
        _observe(eng, monkeypatch, calls)
        for ext in (0, 1):
            assert await _write(eng, ext * AL_EXTENT) == 0
        calls.clear()
        assert await _write(eng, 2 * AL_EXTENT) == 0  # a third extent: one must go when there are 2 slots

    _on_primary(tmp_path, body)
    saves = [i for i, c in enumerate(calls) if c.startswith("save-al")]
    assert len(saves) == 1, calls
    if evicting:
        assert calls[saves[0]] == "save-al [1, 2]", calls
        assert "data-sync" in calls[: saves[0]], f"extent 0 left the log before its data was synced: {calls}"
    else:
        assert calls[saves[0]] == "save-al [0, 1, 2]", calls
        assert "data-sync" not in calls, f"growing the log needs no data sync: {calls}"


@pytest.mark.parametrize("rebooted", [True, False])
def test_a_secondary_whose_node_restarted_resyncs_its_activity_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rebooted: bool
) -> None:
    """A Secondary acknowledges a replicated write once it is in the page cache. Its activity log
    lists the extent before the write lands; after an unclean stop across a reboot (the page
    cache is gone) the extents go into every peer bitmap and the disk is Consistent (not
    UpToDate until a peer connects). A process that merely died (same boot: the kernel still
    writes its pages back) keeps its state."""
    eng = _crash_and_restart(tmp_path, monkeypatch, rebooted)
    try:
        marked = eng.bitmaps[1].count() * 4096
        if rebooted:
            assert eng.sb.disk_state == "Consistent"
            assert marked == 2 * AL_EXTENT  # extents 5 and 9, whole
        else:
            assert eng.sb.disk_state == "UpToDate" and marked == 0
    finally:
        eng.backing.close()


def test_a_replica_without_peers_stays_up_to_date_after_its_node_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No peer can hold a write this disk lacks: nothing to decide, the disk stays UpToDate."""
    eng = _crash_and_restart(tmp_path, monkeypatch, True, peers=0)
    try:
        assert eng.sb.disk_state == "UpToDate"
    finally:
        eng.backing.close()


def _crash_and_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rebooted: bool, peers: int = 1) -> E.Engine:
    """Two replicated writes taken, the process killed, started again (``rebooted``: under
    another boot id)."""
    monkeypatch.setenv("HASTACK_BLOCKREPL_BOOT_ID", "boot-1")

    async def crash_after_a_replicated_write() -> None:
        eng = _engine(tmp_path, peers)
        eng.apply_remote(5 * AL_EXTENT + 4096, b"\x77" * 4096, 4096)
        eng.apply_batch(_batch([(9 * AL_EXTENT, 4096)]))
        eng.backing.close()  # no close_clean: the process died

    async def restart() -> E.Engine:
        return _engine(tmp_path, peers)

    asyncio.run(crash_after_a_replicated_write())
    if rebooted:
        monkeypatch.setenv("HASTACK_BLOCKREPL_BOOT_ID", "boot-2")
    return asyncio.run(restart())


def _batch(writes: list[tuple[int, int]]) -> bytes:
    table = b"".join(fastpath.ENTRY.pack(o, n, 0) for o, n in writes)
    return fastpath.HEAD.pack(len(writes), 0) + table + b"".join(b"\x55" * n for _, n in writes)


def test_an_orderly_stop_empties_the_activity_log_only_after_the_data_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def body(eng: E.Engine) -> None:
        assert await _write(eng, 3 * AL_EXTENT) == 0
        _observe(eng, monkeypatch, calls)
        eng.close_clean()

    _on_primary(tmp_path, body)
    assert "save-al []" in calls and "data-sync" in calls[: calls.index("save-al []")], calls


class _Peer:
    """The engine's view of one replicating peer link: records what was sent to it."""

    node_id = 1
    replicating = True
    batches = False

    def __init__(self, want: int) -> None:
        self.sent: list[int] = []
        self.want, self.all_sent = want, asyncio.Event()

    def send_write(self, wid: int, offset: int, data: bytes | memoryview, fua: bool) -> None:
        self.sent.append(wid)
        if len(self.sent) >= self.want:
            self.all_sent.set()


def test_the_settled_id_stays_below_the_oldest_write_a_peer_has_not_acknowledged(tmp_path: Path) -> None:
    """What a Primary tells its Secondaries (wire version 6): every write up to the settled id
    reached every peer it was sent to. Acknowledgements arrive out of order; the id may only
    pass a write once that write is acknowledged."""

    async def body(eng: E.Engine) -> None:
        peer = _Peer(3)
        eng.links[1] = peer  # type: ignore[assignment]
        base = eng.settled_id()
        done = [_write(eng, i * 4096) for i in range(3)]
        await asyncio.wait_for(peer.all_sent.wait(), 10)
        w0, w1, w2 = peer.sent
        assert eng.settled_id() == base == w0 - 1
        eng.peer_ack(1, w1)
        eng.peer_ack(1, w2)
        assert eng.settled_id() == w0 - 1, "passed a write the peer has not acknowledged"
        eng.peer_ack(1, w0)
        assert eng.settled_id() == w2
        assert [await d for d in done] == [0, 0, 0]

    _on_primary(tmp_path, body)


def test_what_a_replication_read_completes_is_sent_at_its_end(tmp_path: Path) -> None:
    """Client replies completed while a replication read is handled go out when it ends (no
    extra event-loop turn); outside a read there is nowhere to put them (the caller schedules)."""

    async def body(eng: E.Engine) -> None:
        ran: list[str] = []
        assert not eng.after_read(lambda: ran.append("outside"))
        eng.read_begins()
        assert eng.after_read(lambda: ran.append("first")) and eng.after_read(lambda: ran.append("second"))
        assert ran == []
        eng.read_ends()
        assert ran == ["first", "second"]
        eng.read_ends()  # nothing runs twice
        assert ran == ["first", "second"] and not eng.after_read(lambda: ran.append("late"))

    _on_primary(tmp_path, body)
