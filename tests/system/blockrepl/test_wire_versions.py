"""Rolling update of the replication protocol: a replica that speaks only wire version 1
(HMAC-SHA256 frames) and a current one replicate on version 1; updated to offer up to 2 (GMAC
frames) they use 2; once both offer 3 (acknowledgements gathered per read) they use 3; at 4
small writes travel as write batches (one WRITES frame each), and only then; 5 (the Consistent
disk state) changes nothing on this path. Under protocols C and B (whose acknowledgements are
gathered differently). Data identical on both throughout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, cluster, wait_for
from hastack_blockrepl import wire as W

SIZE = 32 << 20


def write_and_compare(c: Cluster, tmp_path: Path, seed: int) -> None:
    src = tmp_path / f"src{seed}.bin"
    src.write_bytes(os.urandom(8 << 20))
    for argv in (
        ["nbdcopy", "--flush", str(src), c[0].nbd_uri],  # 8 MiB in large requests
        ["fio", "--name=w", "--ioengine=nbd", f"--uri={c[0].nbd_uri}", "--rw=randwrite", "--bs=4k",
         "--iodepth=16", "--size=16M", "--offset=8M", "--io_size=4M", f"--randseed={seed}"],
    ):  # fmt: skip
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
        assert res.returncode == 0, f"{argv}: {res.stdout}\n{res.stderr}"
    wait_for(lambda: c[0].status()["in_flight"] == 0, 10, "no write in flight")
    assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)


def versions(c: Cluster) -> tuple[object, object]:
    return c[0].peer(1).get("wire_version"), c[1].peer(0).get("wire_version")


@pytest.mark.parametrize("protocol", ["C", "B"])
def test_old_and_new_replicas_replicate_then_upgrade(tmp_path: Path, protocol: str) -> None:
    (tmp_path / "c").mkdir()
    with cluster(tmp_path / "c", 2, size=SIZE, protocol=protocol) as c:
        steps = [("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5), (None, W.VERSION_MAX)]
        for step, (offered, want) in enumerate(steps, start=1):
            c[1].env.pop("HASTACK_BLOCKREPL_WIRE_MAX", None)
            if offered:  # node 1 runs an older release
                c[1].env["HASTACK_BLOCKREPL_WIRE_MAX"] = offered
            c[1].stop()
            c[1].start()
            c.wait_connected(60)
            if step == 1:
                c[0].call("primary")
            wait_for(lambda want=want: versions(c) == (want, want), 30, f"both replicas on wire version {want}")
            batches = c[0].status()["counters"]["write_batches"]
            write_and_compare(c, tmp_path, step)
            sent = c[0].status()["counters"]["write_batches"] - batches
            if want >= W.VERSION_BATCH:
                assert sent > 0, "no write batch on wire version 4"
            else:
                assert sent == 0, f"{sent} write batches sent to a replica on wire version {want}"
