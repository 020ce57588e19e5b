"""The probes: tcp, http/https, dns, tls, exec. Each returns a :class:`Result`, never raises.

A probe runs under its own timeout (the whole exchange: connect, handshake, headers, body), so
a hung or slow-loris target costs one probe its timeout and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import random
import re
import signal
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509

from hastack_common.config_mon import DnsCheck, ExecCheck, HttpCheck, Probe, Target, TcpCheck, TlsCheck
from hastack_common.logs import kv
from hastack_mon import dnswire

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
MAX_OUTPUT = 64 << 10


class ProbeFailure(Exception):
    """An expected failure of the probed service; the message is the probe's detail."""


@dataclass(frozen=True)
class Result:
    ok: bool
    duration: float
    detail: str
    error: bool = False  # the probe itself raised (a bug or an unexpected condition)


def target_host(target: Target, namespace: str) -> str:
    if target.host:
        return target.host
    if target.service:
        return f"{target.service}.{namespace}.svc"
    return "127.0.0.1"  # a HACluster: mon runs inside the member pod, beside the app


def _port(port: int | None, target: Target, what: str) -> int:
    chosen = port or target.port
    if not chosen:
        raise ProbeFailure(f"{what} probe needs a port: set it on the probe or on spec.target")
    return chosen


def tls_context(
    verify: bool, ca_file: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class Prober:
    """Runs probes; holds what they share (one HTTP session, TLS contexts by settings)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _ssl(self, verify: bool, ca: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
        k = (verify, ca, cert, key)
        if k not in self._contexts:
            self._contexts[k] = tls_context(verify, ca, cert, key)
        return self._contexts[k]

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # a fresh connection per probe, as blackbox_exporter: a probe tests connecting too
            connector = aiohttp.TCPConnector(force_close=True, limit=0, ttl_dns_cache=10)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def run(self, probe: Probe, target: Target, namespace: str, timeout: float) -> Result:
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                detail = await self._dispatch(probe, target, namespace, timeout)
            return Result(True, time.monotonic() - start, detail)
        except ProbeFailure as exc:
            return Result(False, time.monotonic() - start, str(exc))
        except TimeoutError:
            return Result(False, time.monotonic() - start, f"timeout after {timeout:g}s")
        except (OSError, aiohttp.ClientError, ssl.SSLError, dnswire.DnsWireError) as exc:
            return Result(False, time.monotonic() - start, f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe that raises is a failed probe, never a crash
            log.warning("probe raised", extra=kv(probe=probe.name, error=repr(exc)))
            detail = f"probe error: {type(exc).__name__}: {exc}"
            return Result(False, time.monotonic() - start, detail, error=True)

    async def _dispatch(self, probe: Probe, target: Target, ns: str, timeout: float) -> str:
        host = target_host(target, ns)
        kind = probe.kind
        if kind == "tcp":
            c = probe.tcp or TcpCheck()
            return await tcp(host, _port(c.port, target, "tcp"), c)
        if kind in ("http", "https"):
            return await self.http(host, target, probe.http_check(), kind)
        if kind == "dns" and probe.dns is not None:
            return await dns(host, probe.dns, timeout)
        if kind == "tls":
            t = probe.tls or TlsCheck()
            ctx = self._ssl(not t.insecure_skip_verify, t.ca_file)
            return await tls(host, _port(t.port, target, "tls"), t, ctx)
        if kind == "exec" and probe.exec is not None:
            return await run_exec(probe.exec)
        raise ProbeFailure(f"probe {probe.name!r}: no {kind} block")

    async def http(self, host: str, target: Target, c: HttpCheck, scheme: str) -> str:
        port = c.port or target.port or (443 if scheme == "https" else 80)
        url = c.url or f"{scheme}://{_bracket(host)}:{port}{c.path}"
        ctx: ssl.SSLContext | bool = False
        if url.startswith("https:"):
            ctx = self._ssl(not c.insecure_skip_verify, c.ca_file, c.client_cert_file, c.client_key_file)
        async with self.session().request(
            c.method,
            url,
            headers=c.headers,
            data=c.body,
            ssl=ctx,
            allow_redirects=c.follow_redirects,
            max_redirects=c.max_redirects,
            server_hostname=c.server_name,
        ) as resp:
            ok_status = resp.status in c.expect_status if c.expect_status else 200 <= resp.status < 400
            if not ok_status:
                want = ",".join(map(str, c.expect_status)) or "200-399"
                raise ProbeFailure(f"HTTP {resp.status} from {url}, expected {want}")
            if c.body_regex is not None:
                raw = bytearray()
                while len(raw) < MAX_BODY and (chunk := await resp.content.read(MAX_BODY - len(raw))):
                    raw += chunk
                if not re.search(c.body_regex, raw.decode("utf-8", "replace")):
                    raise ProbeFailure(f"body of {url} does not match {c.body_regex!r}")
            return f"HTTP {resp.status}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def tcp(host: str, port: int, c: TcpCheck) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if c.send is not None:
            writer.write(c.send.encode())
            await writer.drain()
        if c.expect is None:
            return f"connected to {host}:{port}"
        pattern, got = re.compile(c.expect), b""
        while len(got) < MAX_OUTPUT:
            chunk = await reader.read(4096)
            if not chunk:
                break
            got += chunk
            if pattern.search(got.decode("utf-8", "replace")):
                return f"{host}:{port} answered {c.expect!r}"
        raise ProbeFailure(f"{host}:{port} closed without sending anything matching {c.expect!r}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def tls(host: str, port: int, c: TlsCheck, ctx: ssl.SSLContext) -> str:
    _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=c.server_name or host)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise ProbeFailure(f"{host}:{port} sent no certificate")
    cert = x509.load_der_x509_certificate(der)
    left = (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
    if left < c.min_days_left:
        raise ProbeFailure(f"certificate of {host}:{port} expires in {left:.1f} days (< {c.min_days_left:g})")
    return f"certificate valid for {left:.1f} more days"


class _DnsClient(asyncio.DatagramProtocol):
    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 2 and int.from_bytes(data[:2], "big") == self.qid and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def dns(host: str, c: DnsCheck, timeout: float) -> str:
    server, port = c.server or host, 53
    if c.server and re.fullmatch(r".*:\d+", c.server) and c.server.count(":") == 1:
        server, _, p = c.server.partition(":")
        port = int(p)
    elif c.server and c.server.startswith("[") and "]:" in c.server:
        server, _, p = c.server[1:].partition("]:")
        port = int(p)
    qid = random.getrandbits(16)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: _DnsClient(qid), remote_addr=(server, port))
    try:
        transport.sendto(dnswire.build_query(qid, c.name, c.record_type))
        resp = dnswire.parse_response(await proto.answer)
    finally:
        transport.close()
    if resp.rcode != c.rcode:
        where = f"{c.name} {c.record_type} @{server}:{port}"
        raise ProbeFailure(f"{where}: rcode {resp.rcode}, expected {c.rcode}")
    got = [rdata for _, rtype, rdata in resp.answers if rtype == c.record_type]
    missing = [e for e in c.expect if e not in got and e.rstrip(".") + "." not in got]
    if missing:
        answers = ", ".join(got) or "no answer"
        raise ProbeFailure(f"{c.name} {c.record_type}: expected {', '.join(missing)}; got {answers}")
    return f"{c.name} {c.record_type}: {', '.join(got) or resp.rcode}"


async def run_exec(c: ExecCheck) -> str:
    env = {**os.environ, **c.env} if c.env else None
    proc = await asyncio.create_subprocess_exec(
        *c.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        out = await proc.stdout.read(MAX_OUTPUT)
        code = await proc.wait()
    finally:
        if proc.returncode is None:  # timed out or cancelled: the whole process group goes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
    text = out.decode("utf-8", "replace")
    if code != c.expect_exit_code:
        tail = text.strip().splitlines()[-1:] or [""]
        raise ProbeFailure(f"{c.command[0]} exited {code}, expected {c.expect_exit_code}: {tail[0][:200]}")
    if c.expect_output is not None and not re.search(c.expect_output, text):
        raise ProbeFailure(f"output of {c.command[0]} does not match {c.expect_output!r}")
    return f"{c.command[0]} exited {code}"
