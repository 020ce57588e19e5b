"""The volume agents against the real blockrepl: promote, expose (nbdfuse + loop), fsck, mount.

Two blockrepl replicas (host processes, loopback replication link, protocol C) and two heartbeat
members in network namespaces (the host's mount namespace, as a pod's Bidirectional hostPath
mount) with a real API server. The filesystem is laid down once through the first Primary, as
fsinit does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.blockrepl_cluster import Cluster
from harness.heartbeat_net import VENV, HeartbeatNet
from harness.procs import run, wait_for
from hastack_common import expose

FAILOVER_BOUND = 4.0 + 2 * 1.0 + 10.0  # the Lease, plus fsck and mount on two busy cores


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Cluster]:
    root = tmp_path / "blockrepl"
    root.mkdir()
    # resource-level fencing on a host: the Primary outdates a lost peer through the peer's socket;
    # a peer whose replica does not answer at all is down (DRBD's exit 5)
    sock = f'"{root}/ctl$HASTACK_PEER_NODE_ID.sock"'
    fence = ["sh", "-c", f"{VENV}/hastack blockrepl outdate --socket {sock} && exit 4; "
             f"{VENV}/hastack blockrepl status --socket {sock} >/dev/null 2>&1 && exit 1; exit 5"]
    c = Cluster(root, 2, size=64 << 20, fence_cmd=fence)
    try:
        c.start()
        c.wait_connected()
        yield c
    finally:
        _cleanup_mounts(tmp_path)
        c.stop()
        _cleanup_exposures(tmp_path)


def _cleanup_mounts(tmp: Path) -> None:
    """What a killed member leaves: its filesystem mount (stale once its replica is gone)."""
    for mnt in tmp.glob("*/mnt"):
        if expose.is_mountpoint(str(mnt)):
            res = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20, check=False)
            if res.returncode:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def _cleanup_exposures(tmp: Path, only: str = "") -> None:
    """Then its loop devices (found by path while their FUSE mount still names it), FUSE mounts and
    nbdfuse processes."""
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=False, timeout=20).stdout
    for line in out.splitlines():
        name, _, back = line.strip().partition(" ")
        if str(tmp / only) in back.strip():
            wait_for(lambda name=name: subprocess.run(["losetup", "--detach", name], capture_output=True,
                                                      check=False).returncode == 0
                     or not os.path.exists(f"/sys/block/{os.path.basename(name)}/loop"), 20,
                     f"{name} detached")
    for wd in [*tmp.glob(f"{only or '*'}/expose"), tmp / "fsinit"]:
        pidfile = wd / "nbdfuse.pid"
        with contextlib.suppress(ValueError, ProcessLookupError, OSError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        if expose.is_mountpoint(str(wd / "fuse")):
            subprocess.run(["fusermount3", "-u", "-z", str(wd / "fuse")], capture_output=True, check=False)


def format_volume(c: Cluster, workdir: Path) -> None:
    """What fsinit does on day 0: mkfs through the Primary, so the mirror receives it."""
    c[0].call("primary")

    async def mkfs() -> None:
        exp = await expose.expose(c[0].nbd_uri, str(workdir))
        try:
            run(["mkfs.ext4", "-q", "-F", exp.device])
        finally:
            await expose.unexpose(str(workdir))

    asyncio.run(mkfs())
    c[0].call("secondary")


def node_dies(net: HeartbeatNet, replicas: Cluster, tmp: Path, name: str) -> None:
    """The active's node dies: heartbeat, blockrepl, and with them what they held on the node.

    The members share this one machine, so the dead node's exposure (nbdfuse, loop device,
    mount) is removed by hand, as the node's reboot would; otherwise a look-up of loop devices
    by the next active could stat a FUSE file whose server is gone.
    """
    net.kill(name)
    replicas[list(net.members).index(name)].kill()
    with contextlib.suppress(ValueError, ProcessLookupError, OSError):
        os.kill(int((tmp / name / "expose" / "nbdfuse.pid").read_text()), signal.SIGKILL)
    subprocess.run(["umount", "-l", str(tmp / name / "mnt")], capture_output=True, check=False)
    _cleanup_exposures(tmp, only=name)


def start_members(replicas: Cluster, tmp_path: Path, hbcluster: Callable[..., HeartbeatNet],
                  prefix: str) -> tuple[HeartbeatNet, Callable[[], str | None]]:
    format_volume(replicas, tmp_path / "fsinit")

    def per_member(i: int, name: str) -> dict[str, Any]:
        r = replicas[i]
        return {"volume": {"blockreplSocket": r.ctl, "nbdUri": r.nbd_uri,
                           "exposeDir": str(tmp_path / name / "expose"),
                           "mountDir": str(tmp_path / name / "mnt"), "fsType": "ext4"}}

    net = hbcluster(n=2, prefix=prefix, per_member=per_member)
    for name in net.members:
        net.start(name)

    def active() -> str | None:
        for n, mem in net.members.items():
            if mem.child is not None and mem.child.running() and mem.status()["role"] == "active":
                return n
        return None

    return net, active


def test_failover_with_blockrepl_and_a_filesystem(replicas: Cluster, tmp_path: Path,
                                                  hbcluster: Callable[..., HeartbeatNet]) -> None:
    net, active = start_members(replicas, tmp_path, hbcluster, "vol")
    names = list(net.members)
    old = wait_for(active, 60, "one active member with its volume mounted")
    i_old = names.index(old)
    mem = net.members[old]
    st = mem.status()
    assert {"volume_promoted", "mounted", "serving"} <= set(st["lastFailover"]["phases"])
    assert replicas[i_old].status()["role"] == "Primary"
    assert mem.state_file()["mounted"] is True
    assert expose.is_mountpoint(str(tmp_path / old / "mnt"))
    data = tmp_path / old / "mnt" / "acknowledged.txt"
    data.write_text("written on the first active\n")
    with open(data) as f:
        os.fsync(f.fileno())
    node_dies(net, replicas, tmp_path, old)
    new = wait_for(lambda: (a := active()) and a != old and a, FAILOVER_BOUND, "the standby active")
    i_new = names.index(new)
    assert replicas[i_new].status()["role"] == "Primary"
    new_mem = net.members[new]
    mounted = tmp_path / new / "mnt" / "acknowledged.txt"
    assert mounted.read_text() == "written on the first active\n"
    phases = new_mem.status()["lastFailover"]["phases"]
    assert phases["detected"]["seconds"] == 0
    assert 0 <= phases["lease_acquired"]["seconds"] <= phases["volume_promoted"]["seconds"] \
        <= phases["mounted"]["seconds"] <= phases["serving"]["seconds"]
    # a clean switchover back is refused while the old replica is gone: the target must be alive
    with pytest.raises(Exception, match="not alive and eligible"):
        new_mem.call("switchover", {"target": old})


def test_an_outdated_standby_does_not_promote_and_says_why(replicas: Cluster, tmp_path: Path,
                                                           hbcluster: Callable[..., HeartbeatNet]) -> None:
    net, active = start_members(replicas, tmp_path, hbcluster, "outd")
    names = list(net.members)
    old = wait_for(active, 60, "one active member")
    i_old, standby = names.index(old), next(n for n in names if n != old)
    i_new = names.index(standby)
    # the replication link drops: the Primary fences its peer (records it Outdated) ...
    replicas[i_old].call("disconnect")
    replicas[i_new].call("disconnect")
    wait_for(lambda: replicas[i_new].status()["disk"] == "Outdated", 20, "the standby's replica Outdated")
    # ... and writes alone
    data = tmp_path / old / "mnt" / "after-the-link-dropped.txt"
    data.write_text("only on the old Primary\n")
    with open(data) as f:
        os.fsync(f.fileno())
    wait_for(lambda: "Outdated" in net.members[standby].status()["blocked"], 10, "the standby blocked")
    node_dies(net, replicas, tmp_path, old)
    deadline = time.monotonic() + 4.0 + 2 * 1.0 + 4.0  # well past the Lease's expiry
    while time.monotonic() < deadline:
        st = net.members[standby].status()
        assert st["role"] == "standby", "an Outdated replica must never be promoted"
        time.sleep(0.25)
    assert st["peers"][old]["state"] == "dead" and st["eligible"] is False
    assert st["blocked"] == "local replica is Outdated"
    assert replicas[i_new].status()["role"] == "Secondary"
