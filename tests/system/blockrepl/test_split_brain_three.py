"""Split brain with 3 replicas: a Secondary that followed the other Primary carries its changes.

A (node 0) is cut off and writes; B (node 1) is promoted and writes, C (node 2) replicating
from B. When A meets C alone, C holds B's changes although it tracked none for A itself: no
after-sb-0pri policy may discard it (docs/blockrepl.md "Split brain"). Both see the split
brain and nothing is synced. Under discard-zero-changes (both branches changed) B then
rejoins C (same generation) and stays apart from A.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, Replica, cluster, wait_for

SIZE = 32 << 20


def write(r: Replica, pattern: int, length: str) -> None:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern} 0 {length}", r.nbd_uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr


def first_block(r: Replica) -> bytes:
    with open(r.disk, "rb") as f:
        return f.read(4096)


def split_brain_seen(x: Replica, y: Replica) -> None:
    for r, o in ((x, y), (y, x)):
        wait_for(lambda r=r, o=o: r.peer(o.node_id)["split_brain"], 30, f"node {r.node_id} to see split brain")
        p = r.peer(o.node_id)
        assert p["connection"] == "StandAlone" and "split brain" in p["reason"], p


def two_branches(c: Cluster) -> None:
    """A writes a common base, is cut off and writes 2 MiB (0x0A); B is promoted and writes 1 MiB
    (0x0B), replicated to C; B steps down. A is StandAlone towards both."""
    a, b = c[0], c[1]
    c.wait_connected()
    a.call("primary")
    write(a, 0x01, "2M")
    a.call("disconnect")  # from both peers
    write(a, 0x0A, "2M")  # more changes than B: least-changes would pick C to lose
    a.call("secondary")
    wait_for(lambda: b.peer(0)["connection"] != "Connected", 10, "B to lose A")
    b.call("primary")
    write(b, 0x0B, "1M")
    wait_for(lambda: b.status()["in_flight"] == 0 and b.peer(2)["unacked_bytes"] == 0, 10, "B's writes on C")
    b.call("secondary")


@pytest.mark.parametrize("policy", ["discard-zero-changes", "discard-least-changes", "discard-younger-primary"])
def test_a_follower_of_the_other_primary_is_never_discarded_by_policy(tmp_path: Path, policy: str) -> None:
    """Before the rule, C (0 changes tracked for A, never Primary) lost to A under all three."""
    with cluster(tmp_path, 3, size=SIZE, splitBrain={"afterSb0Pri": policy}) as c:
        a, b, cc = c[0], c[1], c[2]
        two_branches(c)
        b.stop()
        assert first_block(cc) == b"\x0b" * 4096
        a.call("connect")
        split_brain_seen(a, cc)
        assert first_block(cc) == b"\x0b" * 4096, "C lost B's writes"
        assert first_block(a) == b"\x0a" * 4096
        if policy != "discard-zero-changes":
            return  # which branch B's return keeps is the policy's (least changes, younger Primary)
        b.start()
        wait_for(lambda: b.peer(2)["replication"] == "Established" and cc.peer(1)["replication"] == "Established",
                 60, "B to rejoin C")  # fmt: skip
        split_brain_seen(a, b)
        assert b.data_hash(SIZE) == cc.data_hash(SIZE)


def test_a_secondary_never_stays_established_over_a_peer_that_resyncs_to_the_other_branch(tmp_path: Path) -> None:
    """A is cut off and writes more than B; B (C replicating from it) is promoted and writes. B meets
    A alone and loses (discard-least-changes): it resyncs to A's branch. C, still connected to B,
    holds B's old branch: the B-C link must not stay Established with both UpToDate over
    different data. It is parked during the resync and then decides afresh: split brain."""
    with cluster(tmp_path, 3, size=SIZE, splitBrain={"afterSb0Pri": "discard-least-changes"}) as c:
        a, b, cc = c[0], c[1], c[2]
        two_branches(c)
        cc.call("disconnect", peer=0)  # only B meets A
        a.call("connect")
        wait_for(lambda: b.status()["disk"] == "UpToDate" and b.peer(0)["replication"] == "Established", 60,
                 "B to resync from A")  # fmt: skip
        assert b.data_hash(SIZE) == a.data_hash(SIZE) and first_block(b) == b"\x0a" * 4096
        split_brain_seen(b, cc)
        assert first_block(cc) == b"\x0b" * 4096  # nothing synced over C either
