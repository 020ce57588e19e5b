"""Local control sockets (DESIGN "Local control").

Every sidecar serves a Unix socket in /run/hastack/ speaking JSON lines: a request is
``{"cmd": str, "args": {...}}``, a reply is ``{"ok": bool, "error": str|null, "result": ...}``.
The ``events`` command turns the connection into a stream: one JSON object per line,
each ``{"event": str, ...}``, until the client disconnects.

A handler is ``async def handler(args: dict) -> result``; raising :class:`CommandError`
refuses the command with a message meant for the operator reading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from hastack_common.logs import kv

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_LINE = 1 << 20


class CommandError(Exception):
    """A refused command; its message is returned to the client as ``error``."""


class EventBus:
    """Fan-out of events to every subscribed ``events`` stream (bounded per subscriber)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size

    def publish(self, event: str, **fields: Any) -> None:
        item = {"event": event, **fields}
        for q in list(self._subscribers):
            if q.full():  # a slow reader loses its oldest events, never blocks the sidecar
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(item)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler], events: EventBus | None = None) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.events = events or EventBus()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, reply(False, error=f"request longer than {MAX_LINE} bytes"))
                    return
                if not line:
                    return
                cmd, args, err = parse_request(line)
                if err:
                    await _send(writer, reply(False, error=err))
                    continue
                if cmd == "events":
                    await self._stream(reader, writer)
                    return
                await _send(writer, await self.dispatch(cmd, args))
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            writer.close()

    async def dispatch(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted([*self.handlers, "events"]))
            return reply(False, error=f"unknown command {cmd!r}; known: {known}")
        try:
            return reply(True, result=await handler(args))
        except CommandError as exc:
            return reply(False, error=str(exc))
        except Exception as exc:  # a bug in one command must not kill the sidecar
            log.exception("control command failed", extra=kv(cmd=cmd))
            return reply(False, error=f"internal error in {cmd}: {exc}")

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        q = self.events.subscribe()
        await _send(writer, reply(True, result="streaming"))
        eof = asyncio.ensure_future(reader.read())
        try:
            while not eof.done():
                get = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({get, eof}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    await _send(writer, get.result())
                else:
                    get.cancel()
        finally:
            eof.cancel()
            self.events.unsubscribe(q)


def parse_request(line: bytes) -> tuple[str, dict[str, Any], str | None]:
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return "", {}, f"request is not JSON: {exc}"
    if not isinstance(msg, dict) or not isinstance(msg.get("cmd"), str):
        return "", {}, 'request must be an object with a string "cmd"'
    args = msg.get("args") or {}
    if not isinstance(args, dict):
        return "", {}, '"args" must be an object'
    return msg["cmd"], args, None


def reply(ok: bool, *, error: str | None = None, result: Any = None) -> dict[str, Any]:
    return {"ok": ok, "error": error, "result": result}


async def _send(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    writer.write(json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n")
    await writer.drain()


class ControlError(Exception):
    """The sidecar refused a command (``ok: false``) or could not be reached."""


async def call(path: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """One request on a fresh connection; returns ``result`` or raises :class:`ControlError`."""

    async def _once() -> Any:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
        try:
            writer.write(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise ControlError(f"{path}: connection closed without a reply to {cmd!r}")
        msg = json.loads(line)
        if not msg.get("ok"):
            raise ControlError(msg.get("error") or f"{cmd} failed")
        return msg.get("result")

    try:
        return await asyncio.wait_for(_once(), timeout)
    except (TimeoutError, OSError) as exc:
        raise ControlError(f"{path}: {cmd!r} failed: {exc or type(exc).__name__}") from exc


def call_sync(path: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    return asyncio.run(call(path, cmd, args, timeout))
