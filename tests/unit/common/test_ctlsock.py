"""The JSON-lines control socket every sidecar serves (real Unix sockets)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest

from hastack_common.ctlsock import CommandError, ControlError, ControlServer, call


async def _status(args: dict[str, Any]) -> Any:
    return {"role": "Secondary", "echo": args}


async def _refuse(args: dict[str, Any]) -> Any:
    raise CommandError("refusing to become Primary: local disk is Outdated; use --force")


async def _crash(args: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_request_reply_refusal_and_errors(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "x.sock")

    async def scenario() -> None:
        server = ControlServer(path, {"status": _status, "primary": _refuse, "crash": _crash})
        await server.start()
        try:
            assert await call(path, "status", {"a": 1}) == {"role": "Secondary", "echo": {"a": 1}}
            with pytest.raises(ControlError, match="local disk is Outdated"):
                await call(path, "primary")
            with pytest.raises(ControlError, match="internal error in crash: boom"):
                await call(path, "crash")
            with pytest.raises(ControlError, match="unknown command 'nope'; known: crash, events"):
                await call(path, "nope")
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"not json\n[1]\n")
            assert "not JSON" in json.loads(await reader.readline())["error"]
            assert "string \"cmd\"" in json.loads(await reader.readline())["error"]
            writer.close()
            # the server survived all of it
            assert (await call(path, "status"))["role"] == "Secondary"
        finally:
            await server.close()
        assert not pathlib.Path(path).exists()
        with pytest.raises(ControlError):
            await call(path, "status", timeout=1)

    run(scenario())


def test_event_stream(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "e.sock")

    async def scenario() -> None:
        server = ControlServer(path, {"status": _status})
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b'{"cmd": "events"}\n')
            assert json.loads(await reader.readline())["result"] == "streaming"
            server.events.publish("role-changed", role="Primary")
            server.events.publish("disk-state", disk="UpToDate")
            assert json.loads(await reader.readline()) == {"event": "role-changed", "role": "Primary"}
            assert json.loads(await reader.readline())["disk"] == "UpToDate"
            writer.close()
        finally:
            await server.close()

    run(scenario())
