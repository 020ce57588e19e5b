"""A crashed Primary comes back without a full sync: its activity log bounds the resync."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness import blockrepl_fio as fio
from harness.blockrepl_cluster import Cluster, cluster, try_call, wait_for

SIZE = 64 << 20
PER_JOB = 2 << 20  # fio touches the first 8 MiB: two or three 4 MiB activity-log extents


@pytest.mark.parametrize(
    "failover,new_write", [(False, False), (True, True), (True, False)],
    ids=["same-primary", "after-failover", "after-failover-before-any-write"],
)  # fmt: skip
def test_crashed_primary_resyncs_only_its_activity_log(tmp_path: Path, failover: bool, new_write: bool) -> None:
    """The crashed Primary is the source of its activity log's extents; after a failover the
    new Primary is (its data is the one clients see from then on: even before it wrote, when
    clients may only have read it)."""
    with cluster(tmp_path, 2, size=SIZE) as c:
        c.wait_connected()
        c[0].call("primary")
        writer = fio.start_write(tmp_path / "fio", c[0].nbd_uri, PER_JOB)
        wait_for(lambda: c[0].status()["counters"]["writes"] > 500, 60, "writes under way")
        c[0].kill()
        writer.communicate(timeout=60)
        wait_for(lambda: c[1].peer(0)["connection"] == "Connecting", 15, "node 1 to see node 0 gone")
        if failover:
            c[1].call("primary")
        if new_write:
            res = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x66 40M 1M", c[1].nbd_uri],
                                 capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            assert res.returncode == 0
        c[0].start()
        c.wait_connected(60)
        crashed, survivor = c[0], c[1]
        target = crashed if failover else survivor
        source_id = survivor.node_id if failover else crashed.node_id
        sync = target.peer(source_id)["sync"]
        assert 0 < sync["total_bytes"] <= 16 << 20, sync  # the activity log, not the whole device
        assert crashed.data_hash(SIZE) == survivor.data_hash(SIZE)
        assert target.status()["disk"] == "UpToDate"
        if failover:
            res = fio.verify(tmp_path / "fio", survivor.nbd_uri, PER_JOB)
            assert res.returncode == 0, res.stdout[-2000:]


def flushed_then_unflushed(c: Cluster, tmp_path: Path) -> None:
    """Node 0 made Primary; 0x11 over the first 8 MiB, flushed; then 0x22 over the first MiB,
    acknowledged and never flushed (the Primary's flush counter checked unchanged)."""
    c.wait_connected()
    c[0].call("primary")
    old = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x11 0 8M", "-c", "flush", c[0].nbd_uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert old.returncode == 0, old.stdout + old.stderr
    flushes = c[0].status()["counters"]["flushes"]
    new = tmp_path / "new.bin"
    new.write_bytes(b"\x22" * (1 << 20))
    subprocess.run(["nbdcopy", str(new), c[0].nbd_uri], check=True, timeout=60)  # no --flush
    assert c[0].status()["counters"]["flushes"] == flushes


@pytest.mark.parametrize("rebooted", [1, 0], ids=["secondary", "primary"])
def test_a_replica_whose_node_restarted_resyncs_its_activity_log_from_the_peer(tmp_path: Path, rebooted: int) -> None:
    """Writes are acknowledged once in the page cache (durable at the next FLUSH). A node that
    restarts (a new boot id) without a clean stop loses the ones no FLUSH made durable; its
    activity log names the extents they were in, so the replica comes back Outdated with those
    extents marked and resyncs them from the peer that stayed up — not the whole device, not
    nothing, and never in the other direction (a crashed Primary that rebooted is no source)."""
    with cluster(tmp_path, 2, size=SIZE) as c:
        flushed_then_unflushed(c, tmp_path)
        node, peer = c[rebooted], c[1 - rebooted]
        node.kill()
        with open(node.disk, "r+b") as f:  # what the reboot leaves: the write never reached this disk
            f.write(b"\x11" * (1 << 20))
            os.fsync(f.fileno())
        node.env["HASTACK_BLOCKREPL_BOOT_ID"] = "after-a-reboot"
        node.start()
        c.wait_connected(60)
        sync = node.peer(peer.node_id)["sync"]
        assert 0 < sync["total_bytes"] <= 8 << 20, sync  # the activity log's extents, not the device
        for r in c.replicas:
            with open(r.disk, "rb") as f:
                assert f.read(1 << 20) == b"\x22" * (1 << 20), f"node {r.node_id} lacks an acknowledged write"
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)


@pytest.mark.parametrize("older_peer", [False, True], ids=["current", "peer-on-wire-4"])
def test_replicas_whose_nodes_all_restarted_agree_without_an_administrator(tmp_path: Path, older_peer: bool) -> None:
    """A power cut takes every node. Each replica comes back Consistent: alone, it refuses to be
    Primary (a peer that stayed up might hold acknowledged writes it lacks). Once they meet,
    neither stayed up, so the crashed Primary is the source of both activity logs' extents: it
    becomes UpToDate, the other resyncs them, every flushed write is on both, the disks agree.
    With a peer that predates the Consistent state (wire version 4) both say Outdated, the link
    stays down as it did then, and the administrator decides (`primary --force`)."""
    with cluster(tmp_path, 2, size=SIZE) as c:
        flushed_then_unflushed(c, tmp_path)
        for r in c.replicas:
            r.kill()
        with open(c[0].disk, "r+b") as f:  # the Primary's node lost the unflushed write, its peer's kept it
            f.write(b"\x11" * (1 << 20))
            os.fsync(f.fileno())
        for r in c.replicas:
            r.env["HASTACK_BLOCKREPL_BOOT_ID"] = "after-the-power-cut"
        if older_peer:
            c[1].env["HASTACK_BLOCKREPL_WIRE_MAX"] = "4"
        c[1].start()
        assert c[1].status()["disk"] == "Consistent"
        ok, why = try_call(c[1], "primary")
        assert not ok and "local disk is Consistent" in why, why
        c[0].start()
        if older_peer:
            wait_for(lambda: "Outdated" in c[1].peer(0)["reason"], 30, "the link down: a sync from an Outdated disk")
            assert c[0].status()["disk"] == c[1].status()["disk"] == "Consistent"
            c[0].call("primary", force=True)
            for r in c.replicas:  # StandAlone on both sides, as DRBD leaves them
                r.call("connect")
        c.wait_connected(60)
        if not older_peer:
            sync = c[1].peer(0)["sync"]
            assert 0 < sync["total_bytes"] <= 8 << 20, sync  # the logs' extents, not the device
        for r in c.replicas:
            with open(r.disk, "rb") as f:
                got = f.read(8 << 20)
            assert got == b"\x11" * (8 << 20), f"node {r.node_id} lacks a flushed write or holds what the source lost"
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        assert [r.status()["disk"] for r in c.replicas] == ["UpToDate", "UpToDate"]
        c[0].call("primary")  # no --force needed any more
