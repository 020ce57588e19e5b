"""Resource-level fencing: make sure a lost peer is recorded Outdated before the next acknowledged write.

A handler is anything with ``async fence(request) -> FenceResult``. Built in here: a command
run on the host (DRBD's ``fence-peer`` handler; exit codes as DRBD's: 0, 3 "peer already
Inconsistent", 4 "peer Outdated", 5 "peer down", 6 "peer is Primary: refuse", 7 "peer fenced
(STONITH)"), and, in a cluster, heartbeat's socket (:class:`SocketFenceHandler`: heartbeat
records the peer Outdated on the HACluster's Lease while it holds it; no process is started, so
a new Primary's first writes wait milliseconds, not a Python start-up). The engine holds writes
while a fence is pending and retries a failed one with backoff; only success releases them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Protocol

from hastack_common import ctlsock, outdate_peer, subproc
from hastack_common.config_blockrepl import Handlers
from hastack_common.logs import kv

log = logging.getLogger(__name__)
SUCCESS_CODES = {
    0: "peer outdated",
    3: "peer already Inconsistent",
    4: "peer Outdated",
    5: "peer down",
    7: "peer fenced",
}


@dataclass(frozen=True)
class FenceRequest:
    resource: str
    node_id: int  # this replica
    peer_node_id: int
    peer_name: str
    peer_address: str


@dataclass(frozen=True)
class FenceResult:
    ok: bool
    detail: str


class FencePeerHandler(Protocol):
    async def fence(self, req: FenceRequest) -> FenceResult: ...


class CommandFenceHandler:
    """Runs ``argv`` with DRBD-style environment variables; the exit code decides."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.argv, self.timeout = argv, timeout

    async def fence(self, req: FenceRequest) -> FenceResult:
        env = handler_env(req.resource, req.node_id, req.peer_node_id, req.peer_name, req.peer_address)
        code, text = await run_command(self.argv, env, self.timeout, "fence-peer handler")
        if code is None:
            return FenceResult(False, text)
        if code in SUCCESS_CODES:
            return FenceResult(True, f"exit {code}: {SUCCESS_CODES[code]} {text}".strip())
        return FenceResult(False, f"fence-peer handler exit {code}: {text or 'no output'}")


def handler_env(resource: str, node_id: int, peer_node_id: int, peer_name: str, peer_address: str,
                **extra: str) -> dict[str, str]:
    """The environment of blockrepl's handler commands (DRBD's names too)."""
    return dict(os.environ, HASTACK_RESOURCE=resource, HASTACK_NODE_ID=str(node_id),
                HASTACK_PEER_NODE_ID=str(peer_node_id), HASTACK_PEER_NAME=peer_name,
                HASTACK_PEER_ADDRESS=peer_address, DRBD_RESOURCE=resource, DRBD_PEER_NODE_ID=str(peer_node_id),
                **extra)


SETPRIV = shutil.which("setpriv")


def dies_with_this_process(argv: list[str]) -> list[str]:
    """``argv`` under ``setpriv --pdeathsig KILL`` (util-linux) where it exists: a handler killed
    when this replica dies, not left to act later (an orphaned fence-peer handler outdated a
    peer that had resynced and become the only UpToDate replica meanwhile)."""
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv] if SETPRIV else argv


async def run_command(argv: list[str], env: dict[str, str], timeout: float, what: str) -> tuple[int | None, str]:
    """Run a handler once: (exit code, the tail of its output); (None, why) if it could not start
    or was killed at ``timeout``. The handler dies with this replica."""
    try:
        code, out = await subproc.run(dies_with_this_process(argv), timeout, env)
    except OSError as exc:
        return None, f"cannot run {what} {argv[0]}: {exc.strerror}"
    except TimeoutError:
        return None, f"{what} timed out after {timeout}s"
    return code, out[-500:]


class SocketFenceHandler:
    """Asks heartbeat (``outdate-peer`` on its control socket) to record the peer Outdated."""

    def __init__(self, socket: str, timeout: float) -> None:
        self.socket, self.timeout = socket, timeout

    async def fence(self, req: FenceRequest) -> FenceResult:
        args = outdate_peer.OutdatePeerRequest(peer_node_id=req.peer_node_id, peer_name=req.peer_name,
                                               resource=req.resource).model_dump(by_alias=True)
        try:
            reply = await ctlsock.call(self.socket, outdate_peer.OUTDATE_PEER_CMD, args, timeout=self.timeout)
        except ctlsock.ControlError as exc:
            return FenceResult(False, f"heartbeat did not record the peer Outdated: {exc}")
        return FenceResult(True, f"peer Outdated: recorded on the Lease ({reply})")


def handler_for(handlers: Handlers) -> FencePeerHandler | None:
    """The configured fence-peer handler: heartbeat's socket, a command, or none."""
    if handlers.outdate_peer_socket:
        return SocketFenceHandler(handlers.outdate_peer_socket, handlers.fence_timeout)
    if handlers.fence_peer:
        return CommandFenceHandler(handlers.fence_peer, handlers.fence_timeout)
    return None


async def fence_until_done(
    handler: FencePeerHandler,
    req: FenceRequest,
    still_needed: object,
    backoff: tuple[float, float] = (0.5, 10.0),
) -> FenceResult:
    """Retry until success or until ``still_needed()`` says the fence is moot (peer back, demoted)."""
    delay = backoff[0]
    while True:
        res = await handler.fence(req)
        log.info("fence-peer", extra=kv(peer=req.peer_node_id, ok=res.ok, detail=res.detail))
        if res.ok or not still_needed():  # type: ignore[operator]
            return res
        await asyncio.sleep(delay)
        delay = min(delay * 2, backoff[1])
