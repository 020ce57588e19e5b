"""Split brain: each after-sb policy yields its documented outcome, seen on both replicas.

Two real replicas; both write (qemu-io over NBD) while disconnected, then reconnect. Every
outcome is checked on both sides: the split-brain flag and reason in status, the connection
state, the ``hastack_blockrepl_split_brain`` gauge, the logged sync decision, who synced
from whom (or that nobody did: each disk still holds its own writes), and data hashes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.blockrepl_cluster import Cluster, Replica, cluster, wait_for

SIZE = 32 << 20
PATTERN = (0x0A, 0x0B)  # what node 0 / node 1 write while apart


def write(r: Replica, pattern: int, length: str, offset: str = "0") -> None:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern} {offset} {length}", r.nbd_uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr


def reads_pattern(r: Replica, pattern: int, length: str) -> bool:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", f"read -P {pattern} 0 {length}", r.nbd_uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return res.returncode == 0 and "Pattern verification failed" not in res.stdout + res.stderr


def disk_block(r: Replica, offset: int = 0) -> bytes:
    with open(r.disk, "rb") as f:
        f.seek(offset)
        return f.read(4096)


def split(c: Cluster, len0: str | None, len1: str | None, primaries: tuple[int, ...] = ()) -> None:
    """Both replicas are promoted in turn while disconnected, node 0 first (node 1 is the younger
    Primary); each writes its pattern (``None``: writes nothing). Nodes in ``primaries`` stay Primary."""
    c.wait_connected()
    for r in c.replicas:
        r.call("disconnect")
    for r, length in zip(c.replicas, (len0, len1), strict=True):
        r.call("primary")
        if length:
            write(r, PATTERN[r.node_id], length)
        if r.node_id not in primaries:
            r.call("secondary")
    for r in c.replicas:
        r.call("connect")


def split_brain_gauge(r: Replica, peer: int) -> float:
    for m in re.finditer(r"^hastack_blockrepl_split_brain\{([^}]*)\} (\S+)$", r.call("metrics"), re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels == {"resource": "r0", "peer": str(peer)}:
            return float(m.group(2))
    raise AssertionError(f"node {r.node_id}: no split-brain gauge for peer {peer}")


def decisions(r: Replica) -> list[str]:
    """The sync-decision log lines of this replica."""
    return [ln for ln in r.log.read_text(errors="replace").splitlines() if 'msg="sync decision"' in ln]


def pri_lost_logged(r: Replica) -> bool:
    return 'msg="this Primary lost a split brain"' in r.log.read_text(errors="replace")


def standalone_split_brain(c: Cluster, primaries: tuple[int, ...], wrote: tuple[bool, bool] = (True, True)) -> None:
    """The documented unresolved outcome, on both sides: StandAlone, flagged, gauge 1, nothing synced."""
    who = ["neither", "one", "both"][len(primaries)]
    for r in c.replicas:
        other = 1 - r.node_id
        wait_for(lambda r=r, o=other: r.peer(o)["split_brain"], 30, f"node {r.node_id} to see split brain")
        p = r.peer(other)
        assert p["connection"] == "StandAlone" and p["replication"] == "Off", p
        assert "split brain" in p["reason"] and f"{who} Primary" in p["reason"], p["reason"]
        wait_for(lambda r=r, o=other: split_brain_gauge(r, o) == 1, 10, f"node {r.node_id} split-brain gauge 1")
        assert any("action=disconnect" in ln and "split brain" in ln for ln in decisions(r)), decisions(r)
        assert r.status()["role"] == ("Primary" if r.node_id in primaries else "Secondary")
    for r in c.replicas:  # nothing was synced: each disk still holds its own writes
        if wrote[r.node_id]:
            assert disk_block(r) == bytes([PATTERN[r.node_id]]) * 4096, f"node {r.node_id} was overwritten"


def resolved(c: Cluster, winner: int) -> None:
    """The documented resolved outcome: the loser became SyncTarget of the winner; both see it."""
    loser = 1 - winner
    c.wait_connected(60)
    for r in c.replicas:
        other = 1 - r.node_id
        p = r.peer(other)
        assert not p["split_brain"] and p["connection"] == "Connected", p
        assert split_brain_gauge(r, other) == 0
        action = "sync-target" if r.node_id == loser else "sync-source"
        assert any(f"action={action}" in ln and "split brain resolved" in ln for ln in decisions(r)), decisions(r)
        assert not pri_lost_logged(r)
    assert c[loser].peer(winner)["sync"]["total_bytes"] > 0
    assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
    assert disk_block(c[loser]) == bytes([PATTERN[winner]]) * 4096


# ---- 0 Primaries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy,len0,len1,winner",
    [
        ({"afterSb0Pri": "discard-younger-primary"}, "1M", "1M", 0),
        ({"afterSb0Pri": "discard-older-primary"}, "1M", "1M", 1),
        ({"afterSb0Pri": "discard-least-changes"}, "2M", "256k", 0),
        ({"afterSb0Pri": "discard-least-changes"}, "1M", "1M", 0),  # tie: the younger Primary loses
    ],
    ids=["younger", "older", "least-changes", "least-changes-tie"],
)
def test_after_sb_0pri_policies(tmp_path: Path, policy: dict[str, str], len0: str, len1: str, winner: int) -> None:
    with cluster(tmp_path, 2, size=SIZE, splitBrain=policy) as c:
        split(c, len0, len1)
        resolved(c, winner)
        c[winner].call("primary")
        assert reads_pattern(c[winner], PATTERN[winner], "256k")


@pytest.mark.parametrize("policy", ["discard-zero-changes", "disconnect"])
def test_a_side_without_changes_is_no_split_brain(tmp_path: Path, policy: str) -> None:
    """Node 1 is promoted but writes nothing: a generation starts with the first write, so it has
    no new generation and simply syncs from node 0 — what discard-zero-changes would decide, under
    any policy."""
    with cluster(tmp_path, 2, size=SIZE, splitBrain={"afterSb0Pri": policy}) as c:
        c.wait_connected()
        c[0].call("primary")
        write(c[0], 0x01, "1M", "8M")  # a common generation (from day 0 it would be a full sync)
        c[0].call("secondary")
        split(c, "1M", None)
        c.wait_connected(60)
        for r in c.replicas:
            assert not r.peer(1 - r.node_id)["split_brain"] and split_brain_gauge(r, 1 - r.node_id) == 0
            assert not any("split brain" in ln for ln in decisions(r)), decisions(r)
        assert c[1].peer(0)["sync"]["total_bytes"] == 1 << 20  # bitmap-based: only what node 0 wrote
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        assert disk_block(c[1]) == bytes([PATTERN[0]]) * 4096


# ---- policies that leave the split brain to the operator ----------------------------------


@pytest.mark.parametrize(
    "policy,primaries,net",
    [
        ({}, (), {}),
        ({"afterSb0Pri": "discard-zero-changes"}, (), {}),  # both changed
        ({"afterSb0Pri": "discard-older-primary", "afterSb1Pri": "disconnect"}, (1,), {}),
        ({"afterSb0Pri": "discard-younger-primary", "afterSb1Pri": "consensus"}, (1,), {}),  # Primary would lose
        ({"afterSb0Pri": "discard-younger-primary"}, (0, 1), {"allowTwoPrimaries": True}),  # afterSb2Pri disconnect
    ],
    ids=["0pri-disconnect", "0pri-zero-changes-both-changed", "1pri-disconnect", "1pri-consensus-loses", "2pri"],
)
def test_unresolved_split_brain_leaves_both_standalone(
    tmp_path: Path, policy: dict[str, str], primaries: tuple[int, ...], net: dict[str, Any]
) -> None:
    with cluster(tmp_path, 2, size=SIZE, splitBrain=policy, net=net) as c:
        split(c, "1M", "1M", primaries)
        standalone_split_brain(c, primaries)
        assert not any(pri_lost_logged(r) for r in c.replicas)
        for r in c.replicas:  # a Primary keeps serving its own data
            if r.node_id in primaries:
                assert reads_pattern(r, PATTERN[r.node_id], "1M")


def test_operator_resolves_with_discard_my_data(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, size=SIZE) as c:
        split(c, "1M", "1M")
        standalone_split_brain(c, ())
        c[1].call("connect", discard_my_data=True)
        c[0].call("connect")
        c.wait_connected(60)
        assert c[1].peer(0)["sync"]["total_bytes"] > 0
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
        assert disk_block(c[1]) == bytes([PATTERN[0]]) * 4096
        assert all(split_brain_gauge(r, 1 - r.node_id) == 0 for r in c.replicas)


# ---- 1 Primary: the Secondary's data is discarded -----------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        {"afterSb1Pri": "discard-secondary"},
        {"afterSb0Pri": "discard-older-primary", "afterSb1Pri": "consensus"},
        {"afterSb0Pri": "discard-older-primary", "afterSb1Pri": "call-pri-lost-after-sb"},
    ],
    ids=["discard-secondary", "consensus", "call-pri-lost-secondary-loses"],
)
def test_after_sb_1pri_secondary_loses(tmp_path: Path, policy: dict[str, str]) -> None:
    with cluster(tmp_path, 2, size=SIZE, splitBrain=policy) as c:
        split(c, "1M", "1M", primaries=(1,))
        resolved(c, 1)
        assert c[1].status()["role"] == "Primary"
        assert reads_pattern(c[1], PATTERN[1], "1M")


# ---- call-pri-lost-after-sb: the losing Primary runs the handler --------------------------


def handler_ran(tmp_path: Path, r: Replica) -> Path:
    """Where the handler run by ``r``'s process left its environment (named by its parent's pid, so
    which replica ran it does not depend on the environment under test)."""
    assert r.child is not None
    return tmp_path / f"pri-lost-{r.child.pid}.env"


@pytest.mark.parametrize(
    "policy,primaries,net,loser",
    [
        ({"afterSb0Pri": "discard-younger-primary", "afterSb1Pri": "call-pri-lost-after-sb"}, (1,), {}, 1),
        ({"afterSb0Pri": "discard-older-primary", "afterSb2Pri": "call-pri-lost-after-sb"}, (0, 1),
         {"allowTwoPrimaries": True}, 0),
        ({"afterSb0Pri": "discard-younger-primary", "afterSb2Pri": "call-pri-lost-after-sb"}, (0, 1),
         {"allowTwoPrimaries": True}, 1),
    ],
    ids=["1pri", "2pri-older-loses", "2pri-younger-loses"],
)  # fmt: skip
def test_call_pri_lost_after_sb_runs_the_handler_on_the_losing_primary(
    tmp_path: Path, policy: dict[str, str], primaries: tuple[int, ...], net: dict[str, Any], loser: int
) -> None:
    handler = ["/bin/sh", "-c", 'env > "$0/pri-lost-$PPID.tmp" && mv "$0/pri-lost-$PPID.tmp" "$0/pri-lost-$PPID.env"',
               str(tmp_path)]  # fmt: skip
    with cluster(tmp_path, 2, size=SIZE, splitBrain=policy, net=net, handlers={"priLostAfterSb": handler}) as c:
        split(c, "1M", "1M", primaries)
        standalone_split_brain(c, primaries)
        out = handler_ran(tmp_path, c[loser])
        wait_for(out.exists, 30, f"the pri-lost-after-sb handler on node {loser}")
        env = dict(ln.split("=", 1) for ln in out.read_text().splitlines() if "=" in ln)
        winner = 1 - loser
        assert env["HASTACK_RESOURCE"] == env["DRBD_RESOURCE"] == "r0"
        assert env["HASTACK_NODE_ID"] == str(loser)
        assert env["HASTACK_PEER_NODE_ID"] == env["DRBD_PEER_NODE_ID"] == str(winner)
        assert env["HASTACK_PEER_NAME"] == f"node{winner}"
        assert env["HASTACK_PEER_ADDRESS"] == c[loser].cfg["peers"][0]["address"]
        assert "split brain" in env["HASTACK_SPLIT_BRAIN_REASON"]
        # the decision is taken on both sides at once: only the loser logged and ran it
        assert pri_lost_logged(c[loser]) and not pri_lost_logged(c[winner])
        assert not handler_ran(tmp_path, c[winner]).exists()
        assert c[loser].status()["role"] == "Primary"  # it never demotes itself: the handler decides


def test_two_primaries_without_allow_two_primaries_never_compare_data(tmp_path: Path) -> None:
    """afterSb2Pri needs net.allowTwoPrimaries: otherwise two Primaries keep reconnecting with the
    reason in status and nothing is decided; demoting one lets the 1-Primary policy act."""
    with cluster(tmp_path, 2, size=SIZE, splitBrain={"afterSb1Pri": "discard-secondary"}) as c:
        split(c, "1M", "1M", primaries=(0, 1))
        for r in c.replicas:
            wait_for(lambda r=r: "both replicas are Primary" in r.peer(1 - r.node_id)["reason"], 30,
                     f"node {r.node_id} to refuse the other Primary")  # fmt: skip
            p = r.peer(1 - r.node_id)
            # it keeps trying (Connecting, or Connected for a handshake that ends the same way)
            assert p["connection"] != "StandAlone" and p["replication"] == "Off" and not p["split_brain"], p
            assert disk_block(r) == bytes([PATTERN[r.node_id]]) * 4096
        c[1].call("secondary")
        resolved(c, 0)
        assert c[0].status()["role"] == "Primary"
