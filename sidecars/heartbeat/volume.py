"""Volume resource agents: promote the local blockrepl replica, expose it, fsck, mount, grow.

In promotion order: :class:`ReplicaAgent` (``primary`` on blockrepl's control socket; refused
by blockrepl when the local disk is Outdated or Inconsistent), :class:`ExposeAgent`
(``hastack_common.expose``: kernel nbd or nbdfuse + loop), :class:`FilesystemAgent` (fsck,
mount on the member's hostPath directory, grow). Each is idempotent: an existing exposure and an
existing mount of the same device are reused, after a read through them succeeds.

On a voluntary demotion they stop in reverse (unmount, unexpose, ``secondary``). When the right to
stay active is already lost, blockrepl holds every write (its deadline lapsed), so an unmount
would hang: :meth:`ReplicaAgent.fence` first makes blockrepl Secondary with ``force`` (held
writes fail, never applied), then the rest stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from hastack_common import consts, ctlsock, expose, state_file, subproc
from hastack_common.logs import kv
from hastack_heartbeat.agents import AgentError

log = logging.getLogger(__name__)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def _blank(dev: str) -> bool:
    """No signature of any kind on ``dev`` (``blkid -p``: exit 2 is "nothing found")."""
    try:
        code, _ = await subproc.run(["blkid", "-p", dev], 30)
    except TimeoutError:
        raise AgentError(f"blkid -p {dev} timed out after 30s") from None
    return code == 2


async def _run(*argv: str, timeout: float, ok: tuple[int, ...] = (0,)) -> str:
    try:
        code, text = await subproc.run(list(argv), timeout)
    except TimeoutError:
        raise AgentError(f"{' '.join(argv)} timed out after {timeout:.0f}s") from None
    if code not in ok:
        raise AgentError(f"{' '.join(argv)} failed (exit {code}): {text[-500:]}")
    return text


class ReplicaAgent:
    name = "blockrepl"
    phase = "volume_promoted"

    def __init__(self, socket: str, timeout: float = 30.0) -> None:
        self.socket, self.timeout = socket, timeout
        self.remaining: Any = None  # () -> seconds of right left; set by the node
        self.last_status: dict[str, Any] | None = None

    async def _call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await ctlsock.call(self.socket, cmd, args, timeout=self.timeout)
        except ctlsock.ControlError as exc:
            raise AgentError(f"blockrepl {cmd}: {exc}") from exc

    async def start(self) -> None:
        if self.remaining is not None:  # arm the deadline before the first write can be accepted
            await self.set_deadline(max(0.001, self.remaining()))
        await self._call("primary")

    async def stop(self) -> None:
        try:
            await self._call("secondary")
        except AgentError:
            await self._call("secondary", {"force": True})

    async def fence(self) -> None:
        await self._call("secondary", {"force": True})

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("status")
        self.last_status = result  # published in the member status (status.volume_summary)
        return result

    async def set_deadline(self, seconds: float) -> None:
        await self._call("deadline", {"seconds": seconds})

    async def check(self) -> None:
        st = await self.status()
        if st.get("role") != "Primary":
            raise AgentError(f"blockrepl is {st.get('role')}, not Primary")


class ExposeAgent:
    name = "expose"
    phase = ""

    def __init__(self, uri: str, workdir: str, timeout: float = 30.0) -> None:
        self.uri, self.workdir, self.timeout = uri, workdir, timeout
        self.device: str | None = None

    async def start(self) -> None:
        try:
            self.device = (await expose.expose(self.uri, self.workdir)).device
        except expose.ExposeError as exc:
            raise AgentError(str(exc)) from exc

    async def stop(self) -> None:
        try:
            await expose.unexpose(self.workdir)
        except expose.ExposeError as exc:
            raise AgentError(str(exc)) from exc
        self.device = None

    async def check(self) -> None:
        if self.device is None or not await asyncio.to_thread(os.path.exists, self.device):
            raise AgentError(f"exposed device {self.device} is gone")


class FilesystemAgent:
    name = "filesystem"
    phase = "mounted"

    def __init__(self, exposed: ExposeAgent, mount_dir: str, fstype: str, fsck: bool = True,
                 timeout: float = 300.0, fsinit_result: str = consts.FSINIT_RESULT,
                 format_wait: float = 120.0, gate_dir: str = consts.RUN_DIR, gate_wait: float = 0.0) -> None:
        self.exposed, self.dir, self.fstype, self.fsck, self.timeout = exposed, mount_dir, fstype, fsck, timeout
        self.fsinit_result, self.format_wait = fsinit_result, format_wait
        self.gate_dir, self.gate_wait = gate_dir, gate_wait

    async def start(self) -> None:
        dev = self.exposed.device
        if dev is None:
            raise AgentError("no exposed device to mount")
        await asyncio.to_thread(os.makedirs, self.dir, exist_ok=True)
        if not expose.device_mounted(dev) and await _blank(dev):
            await self._wait_for_fsinit(dev)
        if expose.is_mountpoint(self.dir):
            if not expose.device_mounted(dev):
                raise AgentError(f"{self.dir} is a mount point of another device; refusing to stack a "
                                 "second mount on it (unmount it by hand)")
            await asyncio.wait_for(asyncio.to_thread(os.listdir, self.dir), 10)  # a read must succeed
            log.info("filesystem already mounted, reused", extra=kv(device=dev, dir=self.dir))
        else:
            await self._wait_for_gate()
            t0 = loop_time()
            if self.fsck and self.fstype == "ext4":
                await _run("e2fsck", "-p", dev, timeout=self.timeout, ok=(0, 1))
            t1 = loop_time()
            await _run("mount", "-t", self.fstype, dev, self.dir, timeout=60)
            log.info("filesystem mounted", extra=kv(device=dev, fsck_seconds=round(t1 - t0, 3),
                                                    mount_seconds=round(loop_time() - t1, 3)))
        t2 = loop_time()
        await self._grow(dev)
        log.info("filesystem grown to the device", extra=kv(seconds=round(loop_time() - t2, 3)))

    async def _wait_for_gate(self) -> None:
        """Mount after the app containers' subPath binds exist (a start gate has acknowledged a
        state): those binds then see the filesystem by propagation instead of holding it."""
        if self.gate_wait <= 0:
            return
        deadline = loop_time() + self.gate_wait
        while not await asyncio.to_thread(state_file.read_acks, self.gate_dir):
            if loop_time() > deadline:
                log.warning("no start gate has started; mounting anyway", extra=kv(waited=self.gate_wait))
                return
            await asyncio.sleep(0.2)

    async def _wait_for_fsinit(self, dev: str) -> None:
        """Day 0: the device carries no filesystem yet. Only fsinit formats (DESIGN "Who formats"),
        and it runs beside this promotion, through the device exposed here: wait until it has
        exited (its result file), then mount what it laid down, or say why it did not."""
        log.info("device is blank: waiting for fsinit", extra=kv(device=dev, result=self.fsinit_result))
        deadline = asyncio.get_running_loop().time() + self.format_wait
        while not await asyncio.to_thread(os.path.exists, self.fsinit_result):
            if asyncio.get_running_loop().time() > deadline:
                raise AgentError(f"{dev} carries no filesystem and fsinit did not finish within "
                                 f"{self.format_wait:.0f}s (see the fsinit container's log)")
            await asyncio.sleep(0.5)
        if await _blank(dev):
            try:
                text = await asyncio.to_thread(Path(self.fsinit_result).read_text)
                reason = str(json.loads(text).get("reason", ""))
            except (OSError, ValueError):
                reason = "unreadable result"
            raise AgentError(f"{dev} carries no filesystem and fsinit did not format it: {reason}")

    async def _grow(self, dev: str) -> None:
        if self.fstype == "ext4":
            await _run("resize2fs", dev, timeout=self.timeout)
        elif self.fstype == "xfs":
            await _run("xfs_growfs", self.dir, timeout=self.timeout)
        elif self.fstype == "btrfs":
            await _run("btrfs", "filesystem", "resize", "max", self.dir, timeout=self.timeout)

    async def stop(self) -> None:
        if expose.is_mountpoint(self.dir):
            await _run("umount", self.dir, timeout=60)

    async def check(self) -> None:
        if not expose.is_mountpoint(self.dir):
            raise AgentError(f"{self.dir} is no longer mounted")
        await asyncio.wait_for(asyncio.to_thread(os.listdir, self.dir), 10)
