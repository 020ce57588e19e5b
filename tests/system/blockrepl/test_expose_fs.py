"""Expose the Primary's export as a block device (nbdfuse + loop here), put ext4 on it, fsync
reaches blockrepl as NBD FLUSH, switch over to the peer, and the filesystem is intact there."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

from harness.blockrepl_cluster import cluster, wait_for
from hastack_common.expose import device_mounted, expose, is_mountpoint, loop_for, unexpose

SIZE = 96 << 20


def sh(*argv: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, f"{argv}: {res.stdout}{res.stderr}"
    return res.stdout


def test_expose_mkfs_fsync_switchover_fsck(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    work = [tmp_path / "expose0", tmp_path / "expose1"]
    (tmp_path / "c").mkdir()
    with cluster(tmp_path / "c", 2, size=SIZE) as c:
        try:
            c.wait_connected()
            c[0].call("primary")
            exp = asyncio.run(expose(c[0].nbd_uri, str(work[0])))
            assert exp.device.startswith("/dev/loop") and exp.method == "nbdfuse"
            assert asyncio.run(expose(c[0].nbd_uri, str(work[0]))) == exp  # idempotent: same device
            sh("mkfs.ext4", "-q", "-F", exp.device)
            sh("mount", exp.device, str(mnt))
            payload = os.urandom(3 << 20)
            flushes = c[0].status()["counters"]["flushes"]
            with open(mnt / "data.bin", "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            assert c[0].status()["counters"]["flushes"] > flushes, "fsync did not reach blockrepl as FLUSH"
            sh("umount", str(mnt))
            asyncio.run(unexpose(str(work[0])))
            assert not is_mountpoint(str(work[0] / "fuse"))
            assert asyncio.run(loop_for(str(work[0] / "fuse" / "nbd"))) is None
            asyncio.run(unexpose(str(work[0])))  # idempotent
            c[0].call("secondary")
            wait_for(lambda: c[1].peer(0)["peer_role"] == "Secondary", 10, "node 1 to see the demotion")
            c[1].call("primary")
            exp1 = asyncio.run(expose(c[1].nbd_uri, str(work[1])))
            sh("fsck.ext4", "-f", "-n", exp1.device)
            sh("mount", exp1.device, str(mnt))
            got = (mnt / "data.bin").read_bytes()
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            sh("umount", str(mnt))
            assert not device_mounted(exp1.device)
            asyncio.run(unexpose(str(work[1])))
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
            for w in work:
                try:
                    asyncio.run(unexpose(str(w)))
                except Exception:
                    subprocess.run(["fusermount3", "-u", str(w / "fuse")], capture_output=True, check=False)
