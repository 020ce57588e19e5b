"""Split brain: each after-sb policy yields its documented outcome, seen on both replicas."""

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


def reads_pattern(r: Replica, pattern: int, length: str) -> bool:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", f"read -P {pattern} 0 {length}", r.nbd_uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return res.returncode == 0 and "Pattern verification failed" not in res.stdout + res.stderr


def split(c: Cluster, len0: str, len1: str, keep_primary: bool = False) -> None:
    """Both replicas write while disconnected: node 0 first, then node 1 (the younger Primary)."""
    c.wait_connected()
    for r in c.replicas:
        r.call("disconnect")
    c[0].call("primary")
    write(c[0], 0x0A, len0)
    c[0].call("secondary")
    c[1].call("primary")
    write(c[1], 0x0B, len1)
    if not keep_primary:
        c[1].call("secondary")
    for r in c.replicas:
        r.call("connect")


def resolved(c: Cluster, winner: int) -> None:
    loser = 1 - winner
    c.wait_connected(60)
    for r in c.replicas:
        assert not r.peer(1 - r.node_id)["split_brain"]
    assert c[loser].peer(winner)["sync"]["total_bytes"] > 0
    assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)


@pytest.mark.parametrize(
    "policy,len0,len1,winner",
    [
        ({"afterSb0Pri": "discard-younger-primary"}, "1M", "1M", 0),
        ({"afterSb0Pri": "discard-older-primary"}, "1M", "1M", 1),
        ({"afterSb0Pri": "discard-least-changes"}, "2M", "256k", 0),
    ],
)
def test_after_sb_0pri_policies(tmp_path: Path, policy: dict[str, str], len0: str, len1: str, winner: int) -> None:
    with cluster(tmp_path, 2, size=SIZE, splitBrain=policy) as c:
        split(c, len0, len1)
        resolved(c, winner)
        c[winner].call("primary")
        assert reads_pattern(c[winner], 0x0A if winner == 0 else 0x0B, "256k")


def test_disconnect_policy_leaves_both_standalone_with_split_brain(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE) as c:
        split(c, "1M", "1M")
        for r in c.replicas:
            wait_for(lambda r=r: r.peer(1 - r.node_id)["split_brain"], 30, f"node {r.node_id} to see split brain")
            p = r.peer(1 - r.node_id)
            assert p["connection"] == "StandAlone" and "split brain" in p["reason"]
            metric = f'hastack_blockrepl_split_brain{{peer="{1 - r.node_id}",resource="r0"}} 1.0'
            assert metric in r.call("metrics")
        # the operator resolves it: node 1 discards its changes
        c[1].call("connect", discard_my_data=True)
        c[0].call("connect")
        resolved(c, 0)


def test_after_sb_1pri_discard_secondary(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE, splitBrain={"afterSb1Pri": "discard-secondary"}) as c:
        split(c, "1M", "1M", keep_primary=True)
        resolved(c, 1)
        assert c[1].status()["role"] == "Primary"
        assert reads_pattern(c[1], 0x0B, "1M")
