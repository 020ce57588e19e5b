"""Replicas in separate network namespaces; the link is cut during writes and healed.

- the Primary runs its fence-peer handler (which outdates the peer through its control
  socket) and acknowledges no write until the handler succeeded;
- the outdated peer refuses promotion without --force;
- after the heal only the dirty regions are resynced and both replicas are identical.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, cluster, fence_script, try_call, wait_for
from harness.blockrepl_netns import Mesh, netns_mesh

SIZE = 64 << 20


@pytest.fixture
def mesh2() -> Iterator[Mesh]:
    with netns_mesh(2) as m:
        yield m


def qemu_write(c: Cluster, pattern: int, offset: str, length: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["qemu-io", "-f", "raw", "-c", f"write -P {pattern} {offset} {length}", c[0].nbd_uri],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_link_cut_fences_then_resyncs_only_dirty_regions(tmp_path: Path, mesh2: Mesh) -> None:
    net = {"pingInterval": "200ms", "pingTimeout": "1s"}
    with cluster(tmp_path, 2, size=SIZE, netns=mesh2.names, net=net, fence_cmd=fence_script(tmp_path),
                 peer_address=lambda of, frm: f"{mesh2.address(of, frm)}:7788") as c:  # fmt: skip
        c.wait_connected()
        c[0].call("primary")
        w = qemu_write(c, 0x21, "0", "8M")
        assert w.wait(60) == 0
        mesh2.set_link(0, 1, up=False)
        cut = time.time()
        # a write issued after the cut: held until the fence-peer handler has outdated node 1
        w = qemu_write(c, 0x42, "16M", "1M")
        wait_for(lambda: (tmp_path / "fence.log").exists() and "outdated" in (tmp_path / "fence.log").read_text(),
                 30, "fence-peer handler to outdate node 1")  # fmt: skip
        assert w.wait(30) == 0
        acked = time.time()
        outdated_at = float((tmp_path / "fence.log").read_text().split("outdated 1 ")[1].split()[0])
        assert cut < outdated_at < acked
        assert c[1].status()["disk"] == "Outdated"
        ok, msg = try_call(c[1], "primary")
        assert not ok and "Outdated" in msg and "--force" in msg
        for off in ("20M", "40M"):
            assert qemu_write(c, 0x43, off, "512k").wait(30) == 0
        dirty = c[0].peer(1)["out_of_sync_bytes"]
        assert (1 << 20) + (1 << 20) <= dirty <= 4 << 20, dirty
        mesh2.set_link(0, 1, up=True)
        c.wait_connected(60)
        sync = c[1].peer(0)["sync"]
        assert sync["total_bytes"] == dirty and sync["total_bytes"] < SIZE // 16, sync
        assert c[1].status()["disk"] == "UpToDate"
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)


def test_without_fencing_a_stale_peer_can_be_promoted(tmp_path: Path, mesh2: Mesh) -> None:
    """The mechanism switched off (fencing: dont-care): the write after the cut is acknowledged at
    once, the peer stays UpToDate, accepts promotion, and lacks that acknowledged write — the
    loss that resource-level fencing exists to prevent (and the test above would catch)."""
    net = {"pingInterval": "200ms", "pingTimeout": "1s"}
    with cluster(tmp_path, 2, size=SIZE, netns=mesh2.names, net=net,
                 peer_address=lambda of, frm: f"{mesh2.address(of, frm)}:7788") as c:  # fmt: skip
        c.wait_connected()
        c[0].call("primary")
        mesh2.set_link(0, 1, up=False)
        wait_for(lambda: c[0].peer(1)["connection"] == "Connecting", 30, "node 0 to drop the link")
        assert qemu_write(c, 0x42, "16M", "1M").wait(30) == 0  # acknowledged with nobody fenced
        wait_for(lambda: c[1].peer(0)["connection"] == "Connecting", 30, "node 1 to drop the link")
        assert c[1].status()["disk"] == "UpToDate"
        assert c[1].call("primary")["role"] == "Primary"  # nothing stops it
        res = subprocess.run(["qemu-io", "-f", "raw", "-c", "read -P 0x42 16M 1M", c[1].nbd_uri],
                             capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        assert "Pattern verification failed" in res.stdout + res.stderr  # the acknowledged write is not there
