"""The ``pri-lost-after-sb`` handler: a command run on a Primary that lost a split brain.

DRBD runs it when ``after-sb-1pri``/``after-sb-2pri`` is ``call-pri-lost-after-sb`` and the
after-sb-0pri policy picked the Primary's data to discard; the usual handler reboots or
demotes the node. Here the Primary never demotes itself (heartbeat owns roles): the link
stays StandAlone and the handler decides. Same environment as the fence-peer handler, plus
the split brain's reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hastack_blockrepl.fence import handler_env, run_command
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


def environment(req: PriLost) -> dict[str, str]:
    return handler_env(req.resource, req.node_id, req.peer_node_id, req.peer_name, req.peer_address,
                       HASTACK_SPLIT_BRAIN_REASON=req.reason)


async def run(argv: list[str], req: PriLost, timeout: float) -> int | None:
    """Run the handler once; its exit code (None: could not start, or killed at ``timeout``)."""
    code, text = await run_command(argv, environment(req), timeout, "pri-lost-after-sb handler")
    if code is None:
        log.error("pri-lost-after-sb handler failed", extra=kv(argv=argv[0], error=text))
        return None
    log.warning("pri-lost-after-sb handler ran", extra=kv(peer=req.peer_node_id, exit=code, output=text))
    return code
