"""The ``pri-lost-after-sb`` handler: a command run on a Primary that lost a split brain.

DRBD runs it when ``after-sb-1pri``/``after-sb-2pri`` is ``call-pri-lost-after-sb`` and the
after-sb-0pri policy picked the Primary's data to discard; the usual handler reboots or
demotes the node. Here the Primary never demotes itself (heartbeat owns roles): the link
stays StandAlone and the handler decides. Same environment as the fence-peer handler, plus
the split brain's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from hastack_common.logs import kv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriLost:
    resource: str
    node_id: int  # this replica (the Primary that lost)
    peer_node_id: int
    peer_name: str
    peer_address: str
    reason: str


def environment(req: PriLost, base: dict[str, str] | None = None) -> dict[str, str]:
    return dict(
        os.environ if base is None else base,
        HASTACK_RESOURCE=req.resource,
        HASTACK_NODE_ID=str(req.node_id),
        HASTACK_PEER_NODE_ID=str(req.peer_node_id),
        HASTACK_PEER_NAME=req.peer_name,
        HASTACK_PEER_ADDRESS=req.peer_address,
        HASTACK_SPLIT_BRAIN_REASON=req.reason,
        DRBD_RESOURCE=req.resource,
        DRBD_PEER_NODE_ID=str(req.peer_node_id),
    )


async def run(argv: list[str], req: PriLost, timeout: float) -> int | None:
    """Run the handler once; its exit code (None: could not start, or killed at ``timeout``)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=environment(req), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        log.error("cannot run pri-lost-after-sb handler", extra=kv(argv=argv[0], error=exc.strerror))
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        log.error("pri-lost-after-sb handler timed out", extra=kv(argv=argv[0], timeout=timeout))
        return None
    text = out.decode(errors="replace").strip()[-500:]
    log.warning("pri-lost-after-sb handler ran", extra=kv(peer=req.peer_node_id, exit=proc.returncode, output=text))
    return proc.returncode
