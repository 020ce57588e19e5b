"""Three replicas: writes reach both peers; last man standing needs no split brain."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.blockrepl_cluster import Replica, cluster, wait_for

SIZE = 32 << 20


def write(r: Replica, pattern: int, offset: str, length: str) -> None:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern} {offset} {length}", r.nbd_uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_last_man_standing(tmp_path: Path) -> None:
    """A Primary; stop C; stop B (A writes on alone); C returns and resyncs from A; A stops;
    B returns and meets only C: no split brain, B syncs from C; all three identical at the end."""
    with cluster(tmp_path, 3, size=SIZE) as c:
        a, b, cc = c[0], c[1], c[2]
        c.wait_connected()
        a.call("primary")
        assert all(r.status()["day0_everywhere"] is True for r in c.replicas)  # fsinit may format
        write(a, 0x01, "0", "2M")
        wait_for(lambda: all(r.status()["day0_everywhere"] is False for r in c.replicas), 10, "written everywhere")
        assert a.data_hash(SIZE) == b.data_hash(SIZE) == cc.data_hash(SIZE)
        cc.stop()
        write(a, 0x02, "4M", "1M")
        b.stop()
        write(a, 0x03, "8M", "1M")
        assert a.peer(1)["out_of_sync_bytes"] == 1 << 20
        assert a.peer(2)["out_of_sync_bytes"] == 2 << 20
        cc.start()
        wait_for(lambda: cc.peer(0)["replication"] == "Established" and cc.status()["disk"] == "UpToDate", 60,
                 "C to resync from A")  # fmt: skip
        assert cc.peer(0)["sync"]["total_bytes"] == 2 << 20
        assert a.data_hash(SIZE) == cc.data_hash(SIZE)
        a.call("secondary")
        a.stop()
        b.start()
        wait_for(lambda: b.peer(2)["replication"] == "Established" and b.status()["disk"] == "UpToDate", 60,
                 "B to sync from C")  # fmt: skip
        assert not b.peer(2)["split_brain"] and not cc.peer(1)["split_brain"]
        assert b.data_hash(SIZE) == cc.data_hash(SIZE)
        a.start()
        c.wait_connected(60)
        assert a.data_hash(SIZE) == b.data_hash(SIZE) == cc.data_hash(SIZE)


def test_a_secondary_tells_the_third_replica_when_it_follows_a_new_generation(tmp_path: Path) -> None:
    """C is cut from the Primary A but still connected to B; A starts a new data generation
    (C is not replicating) and B follows it: C's status of B shows B's new identifier, not the
    one from their handshake."""
    with cluster(tmp_path, 3, size=SIZE) as c:
        a, b, cc = c[0], c[1], c[2]
        c.wait_connected()
        a.call("primary")
        write(a, 0x01, "0", "1M")
        cc.call("disconnect", peer=0)
        before = cc.peer(1)["peer_current_uuid"]
        write(a, 0x02, "1M", "1M")  # a new generation: C no longer replicates
        new = a.status()["current_uuid"]
        assert new != before
        wait_for(lambda: b.status()["current_uuid"] == new, 10, "B to follow the Primary's generation")
        wait_for(lambda: cc.peer(1)["peer_current_uuid"] == new, 10, "C to learn B's new identifier")
        assert cc.peer(1)["replication"] == "Established" and cc.status()["current_uuid"] == before
