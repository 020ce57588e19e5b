"""A crashed Primary comes back without a full sync: its activity log bounds the resync."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import blockrepl_fio as fio
from harness.blockrepl_cluster import cluster, wait_for

SIZE = 64 << 20
PER_JOB = 2 << 20  # fio touches the first 8 MiB: two or three 4 MiB activity-log extents


@pytest.mark.parametrize("failover", [False, True], ids=["same-primary", "after-failover"])
def test_crashed_primary_resyncs_only_its_activity_log(tmp_path: Path, failover: bool) -> None:
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
