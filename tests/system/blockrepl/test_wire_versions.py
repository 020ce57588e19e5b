"""Rolling update of the replication protocol: a replica that speaks only wire version 1
(HMAC-SHA256 frames) and one that also speaks version 2 (GMAC frames) replicate on
version 1; once both are updated they use version 2. Data identical on both throughout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.blockrepl_cluster import Cluster, cluster, wait_for

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


def test_old_and_new_replicas_replicate_then_upgrade(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    with cluster(tmp_path / "c", 2, size=SIZE) as c:
        c[1].env["HASTACK_BLOCKREPL_WIRE_MAX"] = "1"  # node 1 runs the old version
        c[1].stop()
        c[1].start()
        c.wait_connected(60)
        c[0].call("primary")
        assert versions(c) == (1, 1)
        write_and_compare(c, tmp_path, 1)

        c[1].env.clear()  # node 1 updated
        c[1].stop()
        c[1].start()
        c.wait_connected(60)
        wait_for(lambda: versions(c) == (2, 2), 30, "both replicas on wire version 2")
        write_and_compare(c, tmp_path, 2)
