"""Growing the volume: backing devices grow, `resize` on the Primary grows every connected
replica (internal metadata moves to the new end); a replica whose disk grew while it was down
still finds its metadata; the new space is usable and identical on both replicas."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.blockrepl_cluster import Replica, cluster, wait_for

SIZE = 32 << 20
GROWN_FILE = 96 << 20


def grow_file(r: Replica) -> None:
    with open(r.disk, "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, GROWN_FILE)


def qemu(r: Replica, cmd: str) -> str:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", cmd, r.nbd_uri], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0 and "failed" not in res.stdout, res.stdout + res.stderr
    return res.stdout


def test_grow_online_and_after_a_restart(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE) as c:
        c.wait_connected()
        c[0].call("primary")
        qemu(c[0], "write -P 0x31 0 1M")
        c[1].stop()  # node 1's disk grows while it is down: it must still find its metadata
        grow_file(c[1])
        c[1].start()
        c.wait_connected(60)
        assert c[1].status()["size"] == SIZE and c[1].status()["current_uuid"] == c[0].status()["current_uuid"]
        grow_file(c[0])
        new = c[0].call("resize")["size"]
        assert SIZE < new <= GROWN_FILE
        for r in c.replicas:
            wait_for(lambda r=r: r.status()["size"] == new, 30, f"node {r.node_id} grown")
        qemu(c[0], f"write -P 0x32 {new - (1 << 20)} 1M")  # a fresh connection sees the new size
        wait_for(lambda: c[0].status()["in_flight"] == 0, 10, "writes settled")
        assert c[0].data_hash(new) == c[1].data_hash(new)
        c[1].stop()
        c[1].start()  # the moved metadata is found again
        c.wait_connected(60)
        assert c[1].status()["size"] == new
        qemu(c[0], f"read -P 0x32 {new - (1 << 20)} 1M")
        qemu(c[0], "read -P 0x31 0 1M")
