"""Probe targets for mon's system tests, run as a real process on loopback.

``python mon_targets.py --cert C --key K --ca CA --ports-file F`` binds every listener on
127.0.0.1 port 0, writes the ports to F as JSON, then serves until killed:

- ``http``: ``/health`` answers the status and body set through ``POST /admin/health``
  (``{"status": 503, "body": "..."}``); ``/redirect`` -> 302 to ``/health``; ``/slow`` dribbles
  its body one byte a second (slow loris); ``POST /hook`` records webhook deliveries and answers
  the status set by ``POST /admin/hook`` (``{"fail": N}`` fails the next N with 500);
  ``GET /admin/hooks`` lists what was recorded.
- ``https``: the same routes over TLS; ``mtls``: the same, requiring a client certificate.
- ``tcp``: echo server (prefixed by a greeting ``hello``); ``hang``: accepts and never answers
  (``GET /admin/hung``: connections open now and at most).

Stopping the process (SIGSTOP) makes every listener hang; killing it refuses connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from typing import Any

from aiohttp import web

STATE: dict[str, Any] = {"status": 200, "body": "healthy", "hook_fail": 0, "hooks": []}


async def health(_: web.Request) -> web.Response:
    return web.Response(status=STATE["status"], text=STATE["body"])


async def set_health(req: web.Request) -> web.Response:
    STATE.update({k: v for k, v in (await req.json()).items() if k in ("status", "body")})
    return web.json_response(STATE["status"])


async def redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("/health")


async def slow(req: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
    await resp.prepare(req)
    for _ in range(1000):
        await resp.write(b"x")
        await asyncio.sleep(1)
    return resp


async def hook(req: web.Request) -> web.Response:
    payload = await req.json()
    if STATE["hook_fail"] > 0:
        STATE["hook_fail"] -= 1
        STATE["hooks_refused"] = STATE.get("hooks_refused", 0) + 1
        return web.Response(status=500, text="failing on purpose")
    STATE["hooks"].append(payload)
    return web.Response(status=204)


async def set_hook(req: web.Request) -> web.Response:
    STATE["hook_fail"] = int((await req.json()).get("fail", 0))
    return web.json_response(STATE["hook_fail"])


async def hooks(_: web.Request) -> web.Response:
    return web.json_response({"hooks": STATE["hooks"], "refused": STATE.get("hooks_refused", 0)})


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello\n")
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


HUNG = {"open": 0, "max": 0}


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    HUNG["open"] += 1  # keep the connection open, say nothing, until the client goes
    HUNG["max"] = max(HUNG["max"], HUNG["open"])
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass
    finally:
        HUNG["open"] -= 1
        writer.close()


async def hung(_: web.Request) -> web.Response:
    return web.json_response(HUNG)


def app() -> web.Application:
    a = web.Application()
    a.router.add_get("/health", health)
    a.router.add_post("/admin/health", set_health)
    a.router.add_get("/redirect", redirect)
    a.router.add_get("/slow", slow)
    a.router.add_post("/hook", hook)
    a.router.add_post("/admin/hook", set_hook)
    a.router.add_get("/admin/hooks", hooks)
    a.router.add_get("/admin/hung", hung)
    return a


async def main(ns: argparse.Namespace) -> None:
    runner = web.AppRunner(app(), access_log=None)
    await runner.setup()
    ports: dict[str, int] = {}
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(ns.cert, ns.key)
    mtls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ns.ca)
    mtls.load_cert_chain(ns.cert, ns.key)
    mtls.verify_mode = ssl.CERT_REQUIRED
    for name, ctx in (("http", None), ("https", tls), ("mtls", mtls)):
        site = web.TCPSite(runner, "127.0.0.1", ns.http_port if name == "http" else 0, ssl_context=ctx)
        await site.start()
        ports[name] = runner.addresses[-1][1]
    servers = [
        await asyncio.start_server(echo, "127.0.0.1", 0),
        await asyncio.start_server(hang, "127.0.0.1", 0),
    ]
    ports["tcp"] = servers[0].sockets[0].getsockname()[1]
    ports["hang"] = servers[1].sockets[0].getsockname()[1]
    tmp = ns.ports_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ports, f)
    os.replace(tmp, ns.ports_file)  # readers see the whole file or none
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--ports-file", required=True)
    p.add_argument("--http-port", type=int, default=0, help="fixed port for http (to restart on the same one)")
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
