"""Volume pieces for heartbeat's system tests and benchmark: blockrepl replicas, day-0 mkfs, node death.

The members share one machine, so what a dead node would lose with it (its nbdfuse process, loop
device and mount) is removed by hand, as the node's reboot would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.blockrepl_cluster import Cluster
from harness.heartbeat_net import VENV, HeartbeatNet
from harness.procs import run, wait_for
from hastack_common import expose


def make_replicas(root: Path, n: int = 2, size: int = 64 << 20, lease_fenced: str = "") -> Cluster:
    """blockrepl replicas with resource-level fencing as on a host: the Primary outdates a lost peer
    through the peer's socket; a peer whose replica does not answer at all is down (DRBD's exit 5).
    ``lease_fenced`` (the members' prefix): the cluster's handler instead, as the operator renders
    it -- heartbeat's socket records the peer Outdated on the Lease (``root/hb<node id>.sock``,
    linked to each member's socket by :func:`link_heartbeat_sockets`), peers named as members."""
    root.mkdir(parents=True, exist_ok=True)
    sock = f'"{root}/ctl$HASTACK_PEER_NODE_ID.sock"'
    host_fence = ["sh", "-c", f"{VENV}/hastack blockrepl outdate --socket {sock} && exit 4; "
                  f"{VENV}/hastack blockrepl status --socket {sock} >/dev/null 2>&1 && exit 1; exit 5"]
    c = Cluster(root, n, size=size, fence_cmd=host_fence)
    if lease_fenced:
        for r in c.replicas:
            r.cfg["handlers"] = {"outdatePeerSocket": str(root / f"hb{r.node_id}.sock")}
            for peer in r.cfg["peers"]:
                peer["name"] = f"{lease_fenced}-{peer['nodeId']}"
    return c


def link_heartbeat_sockets(root: Path, net: HeartbeatNet) -> None:
    for i, mem in enumerate(net.members.values()):
        link = root / f"hb{i}.sock"
        link.unlink(missing_ok=True)
        link.symlink_to(mem.run_dir / "heartbeat.sock")


def volume_config(replicas: Cluster, tmp: Path) -> Any:
    """``per_member`` for HeartbeatNet: member i uses replica i; its hostPath directory is tmp/<pod>/mnt."""

    def per_member(i: int, name: str) -> dict[str, Any]:
        r = replicas[i]
        return {"volume": {"blockreplSocket": r.ctl, "nbdUri": r.nbd_uri,
                           "exposeDir": str(tmp / name / "expose"),
                           "mountDir": str(tmp / name / "mnt"), "fsType": "ext4"}}

    return per_member


def cleanup_mounts(tmp: Path) -> None:
    """What a killed member leaves: its filesystem mount (stale once its replica is gone)."""
    for mnt in tmp.glob("*/mnt"):
        if expose.is_mountpoint(str(mnt)):
            res = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20, check=False)
            if res.returncode:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def cleanup_exposures(tmp: Path, only: str = "") -> None:
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
    """The active's node dies: heartbeat, blockrepl, and what they held on the node."""
    net.kill(name)
    replicas[list(net.members).index(name)].kill()
    with contextlib.suppress(ValueError, ProcessLookupError, OSError):
        os.kill(int((tmp / name / "expose" / "nbdfuse.pid").read_text()), signal.SIGKILL)
    subprocess.run(["umount", "-l", str(tmp / name / "mnt")], capture_output=True, check=False)
    cleanup_exposures(tmp, only=name)


def start_members(replicas: Cluster, tmp_path: Path, hbcluster: Callable[..., HeartbeatNet],
                  prefix: str, *extra_args: str) -> tuple[HeartbeatNet, Callable[[], str | None]]:
    """Format the volume once (fsinit's day 0), then one heartbeat member per replica."""
    format_volume(replicas, tmp_path / "fsinit")
    net = hbcluster(n=2, prefix=prefix, per_member=volume_config(replicas, tmp_path))
    link_heartbeat_sockets(replicas.root, net)
    for name in net.members:
        net.start(name, *extra_args)

    def active() -> str | None:
        for n, mem in net.members.items():
            if mem.child is not None and mem.child.running() and mem.status()["role"] == "active":
                return n
        return None

    return net, active


@contextlib.contextmanager
def running_replicas(tmp: Path, lease_fenced: str = "") -> Iterator[Cluster]:
    """Two connected replicas under ``tmp/blockrepl``; afterwards nothing mounted, exposed or running.
    ``lease_fenced``: the cluster's fence-peer handler instead of the host's (:func:`make_replicas`)."""
    c = make_replicas(tmp / "blockrepl", lease_fenced=lease_fenced)
    try:
        c.start()
        c.wait_connected()
        yield c
    finally:
        cleanup_mounts(tmp)
        c.stop()
        cleanup_exposures(tmp)
