"""Day 0 inside a member: heartbeat exposes a blank volume on promotion and fsinit formats it beside
that promotion. The filesystem agent waits for fsinit's result instead of failing fsck on a device
with no filesystem (which made members ping-pong the Lease with nobody ever formatting), and says
why when fsinit did not format.

Real parts: nbdkit's memory plugin as the volume, nbdfuse + loop (hastack_common.expose), blkid,
mkfs.ext4, e2fsck, mount."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.procs import wait_for
from hastack_heartbeat.agents import AgentError
from hastack_heartbeat.volume import ExposeAgent, FilesystemAgent


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[ExposeAgent]:
    sock = tmp_path / "nbd.sock"
    proc = subprocess.Popen(["nbdkit", "--foreground", "--unix", str(sock), "memory", "32M"])
    agent = ExposeAgent(f"nbd+unix:///?socket={sock}", str(tmp_path / "expose"))
    try:
        wait_for(sock.exists, 10, "nbdkit's socket")
        asyncio.run(agent.start())
        yield agent
    finally:
        subprocess.run(["umount", str(tmp_path / "mnt")], capture_output=True, check=False)
        asyncio.run(agent.stop())
        proc.terminate()
        proc.wait(10)


def result(path: Path, action: str, reason: str) -> None:
    path.write_text(json.dumps({"action": action, "reason": reason, "device": "", "formatted": action == "format"}))


def test_mount_waits_for_fsinit_to_format_a_blank_volume(exposed: ExposeAgent, tmp_path: Path) -> None:
    marker = tmp_path / "fsinit.json"
    fs = FilesystemAgent(exposed, str(tmp_path / "mnt"), "ext4", fsinit_result=str(marker), format_wait=60)

    async def scenario() -> None:
        mount = asyncio.create_task(fs.start())
        await asyncio.sleep(1.5)
        assert not mount.done(), "the agent waits on a blank device instead of failing fsck"
        proc = await asyncio.create_subprocess_exec("mkfs.ext4", "-q", str(exposed.device))
        assert await proc.wait() == 0
        result(marker, "format", "blank, never written, lease holder")
        await asyncio.wait_for(mount, 30)

    asyncio.run(scenario())
    out = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(tmp_path / "mnt")], capture_output=True,
                         text=True, check=False).stdout.strip()  # fmt: skip
    assert out == exposed.device
    asyncio.run(fs.stop())


def test_blank_volume_that_fsinit_skipped_fails_with_its_reason(exposed: ExposeAgent, tmp_path: Path) -> None:
    marker = tmp_path / "fsinit.json"
    result(marker, "skip", "standby: this member does not hold the Lease, the active formats")
    fs = FilesystemAgent(exposed, str(tmp_path / "mnt"), "ext4", fsinit_result=str(marker), format_wait=60)
    with pytest.raises(AgentError, match="fsinit did not format it: standby"):
        asyncio.run(fs.start())


def test_blank_volume_without_fsinit_times_out_with_a_clear_message(exposed: ExposeAgent, tmp_path: Path) -> None:
    fs = FilesystemAgent(exposed, str(tmp_path / "mnt"), "ext4", fsinit_result=str(tmp_path / "none.json"),
                         format_wait=1.0)  # fmt: skip
    with pytest.raises(AgentError, match="fsinit did not finish within 1s"):
        asyncio.run(fs.start())


def test_mount_waits_until_a_start_gate_has_started(exposed: ExposeAgent, tmp_path: Path) -> None:
    """waitForGate: the app container's subPath bind must exist before the mount (it then sees the
    filesystem by propagation instead of holding it)."""
    from hastack_common import state_file

    subprocess.run(["mkfs.ext4", "-q", str(exposed.device)], check=True)
    gates = tmp_path / "run"
    gates.mkdir()
    fs = FilesystemAgent(exposed, str(tmp_path / "mnt"), "ext4", gate_dir=str(gates), gate_wait=60)

    async def scenario() -> None:
        mount = asyncio.create_task(fs.start())
        await asyncio.sleep(1.5)
        assert not mount.done(), "no gate has started: no mount yet"
        ack = state_file.GateAck(name="web", generation=1, running=False)
        state_file.write_atomic(gates / state_file.ack_name("web"), ack.model_dump_json(by_alias=True).encode())
        await asyncio.wait_for(mount, 30)

    asyncio.run(scenario())
    assert subprocess.run(["mountpoint", "-q", str(tmp_path / "mnt")], check=False).returncode == 0
    asyncio.run(fs.stop())
