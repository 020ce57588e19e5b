"""The outdate-peer contract on both sides: blockrepl's built-in socket handler, its command
handler's environment and exit codes with ``hastack ctl heartbeat outdate-peer``, and the
operator's rendered blockrepl config. heartbeat's side is tested in tests/system/heartbeat."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import samples
from hastack_blockrepl.fence import CommandFenceHandler, FenceRequest, SocketFenceHandler, handler_for
from hastack_common import consts, outdate_peer
from hastack_common.config_blockrepl import Handlers
from hastack_common.ctlsock import CommandError, ControlServer, EventBus
from hastack_operator.resources import config
from hastack_operator.resources.spec import HACluster, ReplicatedVolume


def test_request_from_env_takes_what_blockrepl_sets_and_refuses_without_it() -> None:
    req = outdate_peer.request_from_env({"HASTACK_PEER_NODE_ID": "2", "HASTACK_PEER_NAME": "web-2",
                                         "HASTACK_RESOURCE": "ns/data"})
    assert (req.peer_node_id, req.peer_name, req.resource) == (2, "web-2", "ns/data")
    with pytest.raises(ValueError, match="HASTACK_PEER_NODE_ID"):
        outdate_peer.request_from_env({})


async def _fence_through(tmp: Path, reply: Any, builtin: bool) -> tuple[Any, list[dict[str, Any]]]:
    """blockrepl's handler -- built in, or the real `hastack ctl <socket> outdate-peer` -- against
    a server standing in for heartbeat's socket."""
    got: list[dict[str, Any]] = []

    async def handle(args: dict[str, Any]) -> Any:
        got.append(args)
        if isinstance(reply, Exception):
            raise reply
        return reply

    sock = str(tmp / "heartbeat.sock")
    server = ControlServer(sock, {outdate_peer.OUTDATE_PEER_CMD: handle}, EventBus())
    await server.start()
    try:
        argv = [sys.executable, "-P", "-m", "hastack_common.cli", "ctl", sock, outdate_peer.OUTDATE_PEER_CMD]
        handler = SocketFenceHandler(sock, 10) if builtin else CommandFenceHandler(argv, timeout=30)
        res = await handler.fence(FenceRequest("ns/data", 0, 1, "web-1", "web-1.x:7788"))
    finally:
        await server.close()
    return res, got


def test_the_command_fences_with_exit_4_and_a_refusal_keeps_writes_held(tmp_path: Path) -> None:
    os.environ.setdefault("PYTHONSAFEPATH", "1")
    res, got = asyncio.run(_fence_through(tmp_path, {"member": "web-1"}, builtin=False))
    assert res.ok and res.detail.startswith(f"exit {outdate_peer.EXIT_PEER_OUTDATED}")
    assert got == [{"peerNodeId": 1, "peerName": "web-1", "resource": "ns/data"}]
    res, _ = asyncio.run(_fence_through(tmp_path, CommandError("API server unreachable"), builtin=False))
    assert not res.ok and "exit 1" in res.detail and "API server unreachable" in res.detail


def test_the_builtin_handler_sends_the_same_request_and_fails_on_a_refusal(tmp_path: Path) -> None:
    res, got = asyncio.run(_fence_through(tmp_path, {"member": "web-1"}, builtin=True))
    assert res.ok and got == [{"peerNodeId": 1, "peerName": "web-1", "resource": "ns/data"}]
    res, _ = asyncio.run(_fence_through(tmp_path, CommandError("not the active member"), builtin=True))
    assert not res.ok and "not the active member" in res.detail
    assert isinstance(handler_for(Handlers.model_validate({"outdatePeerSocket": "/s"})), SocketFenceHandler)
    assert handler_for(Handlers.model_validate({})) is None


def test_the_operator_renders_the_handler_and_node_ids_that_are_member_ordinals() -> None:
    cluster = HACluster.from_body({**samples.hacluster(replicas=3), "metadata": {"name": "web", "namespace": "ns"}})
    volume = ReplicatedVolume.from_body(samples.replicatedvolume(replicas=3))
    members = [f"web-{i}" for i in range(3)]
    for i in range(3):
        cfg = config.blockrepl(cluster, volume, i).model_dump(by_alias=True)
        assert cfg["nodeId"] == i and cfg["handlers"]["outdatePeerSocket"] == consts.HEARTBEAT_SOCKET
        assert cfg["fencing"] == "resource-only"
        assert {p["nodeId"]: p["name"] for p in cfg["peers"]} == {j: m for j, m in enumerate(members) if j != i}
    assert outdate_peer.FENCE_PEER_COMMAND[1:3] == ["ctl", "heartbeat"]
