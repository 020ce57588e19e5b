"""Configuration changes apply without a restart: the protocol switches (links renegotiate);
a broken file is refused and the replica runs on."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.blockrepl_cluster import cluster, wait_for

SIZE = 16 << 20


def test_protocol_change_online_and_bad_config_refused(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE) as c:
        c.wait_connected()
        c[0].call("primary")
        pids = [r.child.pid for r in c.replicas if r.child]
        for r in c.replicas:
            r.cfg["net"]["protocol"] = "A"
            r.write_config()
        wait_for(lambda: all(r.status()["protocol"] == "A" for r in c.replicas), 30, "protocol A on both")
        c.wait_connected(30)
        res = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x7a 0 1M", "-c", "flush", c[0].nbd_uri],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0
        wait_for(lambda: c[0].peer(1)["unacked_bytes"] == 0, 10, "peer caught up")
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        (tmp_path / "node1.yaml").write_text("nodeId: [this is not valid\n")
        wait_for(lambda: "config change refused" in c[1].log.read_text(), 30, "the bad file to be refused")
        assert c[1].status()["protocol"] == "A" and c[1].running
        assert [r.child.pid for r in c.replicas if r.child] == pids  # nothing restarted
