"""unexpose after a killed container: its nbdfuse is dead and its FUSE mount gone with the mount
namespace, but the loop device it fed is still attached (and losetup can no longer say what backs
it). The exposure record finds that loop by its disk sequence number, and detaches it (a restarted
member leaves no loop behind); a reused device number is never taken for it.

Real parts: nbdkit's memory plugin as the NBD server, nbdfuse, losetup, the kernel's loop driver."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.procs import wait_for
from hastack_common.expose import Exposed, diskseq, expose, is_mountpoint, same_attachment, unexpose


@pytest.fixture
def nbd_uri(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "nbd.sock"
    proc = subprocess.Popen(["nbdkit", "--foreground", "--unix", str(sock), "memory", "16M"])
    try:
        wait_for(sock.exists, 10, "nbdkit's socket")
        yield f"nbd+unix:///?socket={sock}"
    finally:
        proc.terminate()
        proc.wait(10)


def loop_attached(device: str) -> bool:
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME"], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    return device in out.split()


def test_a_dead_exposure_loses_its_loop_device_on_unexpose(nbd_uri: str, tmp_path: Path) -> None:
    work = tmp_path / "expose"
    exp = asyncio.run(expose(nbd_uri, str(work)))
    try:
        record = json.loads((work / "exposed.json").read_text())
        assert record["diskseq"] == diskseq(exp.device) != "" and same_attachment(exp)
        assert not same_attachment(Exposed(exp.device, "nbdfuse", str(work), str(int(record["diskseq"]) - 1)))
        # The container dies: SIGKILL nbdfuse, and its FUSE mount goes with the mount namespace.
        pid = int((work / "nbdfuse.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-l", str(work / "fuse")], check=True)
        assert not is_mountpoint(str(work / "fuse")) and loop_attached(exp.device), "the stale loop stays"

        asyncio.run(unexpose(str(work)))
        assert not loop_attached(exp.device), "unexpose detached the dead exposure's loop device"
        assert not (work / "nbdfuse.pid").exists() and not (work / "exposed.json").exists()
        asyncio.run(unexpose(str(work)))  # idempotent
    finally:
        if loop_attached(exp.device):
            subprocess.run(["losetup", "-d", exp.device], check=False)
        subprocess.run(["umount", "-l", str(work / "fuse")], capture_output=True, check=False)
