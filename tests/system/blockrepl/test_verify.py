"""Online verify finds blocks that differ behind blockrepl's back; a reconnect resyncs exactly those."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.blockrepl_cluster import cluster, wait_for

SIZE = 32 << 20


def test_verify_marks_divergent_blocks_and_resync_repairs_them(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE) as c:
        c.wait_connected()
        c[0].call("primary")
        res = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5c 0 8M", c[0].nbd_uri],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0
        wait_for(lambda: c[0].status()["in_flight"] == 0, 10, "writes settled")
        # silent corruption on node 1: three 4 KiB blocks, two of them adjacent
        fd = os.open(c[1].disk, os.O_WRONLY)
        try:
            for off in (4096 * 10, 4096 * 11, 5 << 20):
                os.pwrite(fd, b"\xee" * 4096, off)
        finally:
            os.close(fd)
        assert c[0].data_hash(SIZE) != c[1].data_hash(SIZE)
        assert c[0].call("verify") == {"verifying": [1]}
        wait_for(lambda: c[0].peer(1).get("verify", {}).get("result") == "done", 120, "verify to finish")
        v = c[0].peer(1)["verify"]
        assert v["out_of_sync_bytes"] > 0 and v["done_bytes"] == SIZE, v
        assert c[0].peer(1)["out_of_sync_bytes"] >= 3 * 4096
        c[0].call("disconnect", peer=1)
        c[0].call("connect", peer=1)
        c.wait_connected(60)
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        assert c[1].peer(0)["sync"]["total_bytes"] <= 2 * (128 << 10)  # only what verify marked


def test_invalidate_forces_a_full_resync(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE) as c:
        c.wait_connected()
        c[0].call("primary")
        subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5d 0 1M", c[0].nbd_uri], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        fd = os.open(c[1].disk, os.O_WRONLY)
        try:
            os.pwrite(fd, b"\xee" * 4096, 8 << 20)  # damage verify would find; invalidate repairs all
        finally:
            os.close(fd)
        c[1].call("invalidate")
        c.wait_connected(60)
        assert c[1].peer(0)["sync"]["total_bytes"] == SIZE  # every block compared
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        assert "hastack_blockrepl_resync_bytes_per_second" in c[0].call("metrics")


def test_scheduled_verify_runs_on_its_own_and_finds_divergence(tmp_path: Path) -> None:
    """``sync.verifySchedule`` every minute: nobody calls ``verify``; the Primary starts it at the
    next minute, finds the block changed under node 1's backing file, and a reconnect repairs it."""
    with cluster(tmp_path, 2, size=SIZE, sync={"verifySchedule": "* * * * *"}) as c:
        c.wait_connected()
        c[0].call("primary")
        res = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5e 0 4M", c[0].nbd_uri],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr
        wait_for(lambda: c[0].status()["in_flight"] == 0, 10, "writes settled")
        fd = os.open(c[1].disk, os.O_WRONLY)
        try:
            os.pwrite(fd, b"\xee" * 4096, 3 << 20)  # inside the data area, behind blockrepl's back
        finally:
            os.close(fd)
        assert c[0].data_hash(SIZE) != c[1].data_hash(SIZE)
        assert c[0].peer(1)["out_of_sync_bytes"] == 0

        def found() -> bool:  # a run before the damage (a minute boundary just then) finds nothing
            v = c[0].peer(1).get("verify", {})
            return v.get("result") == "done" and v["out_of_sync_bytes"] > 0

        wait_for(found, 150, "a scheduled verify to find the damaged block")
        assert 'msg="online verify finished"' in c[0].log.read_text()
        assert c[0].peer(1)["out_of_sync_bytes"] >= 4096
        c[0].call("disconnect", peer=1)
        c[0].call("connect", peer=1)
        c.wait_connected(60)
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        assert 0 < c[1].peer(0)["sync"]["total_bytes"] <= 128 << 10  # only the run verify marked
