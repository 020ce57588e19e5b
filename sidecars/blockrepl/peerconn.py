"""Replication connections: the TCP protocol with its authenticated handshake, and the listener.

Each connection starts unauthenticated: both sides send HELLO, answer the other's challenge
(AUTH), then switch to per-direction MAC keys of the negotiated version (wire.py). Only then
is the connection handed to the PeerLink of the authenticated node id; anything else closes
it. Frames are read into preallocated buffers (a BufferedProtocol, rxbuf.py) and sent with
``sendmsg`` (sendq.py): no payload is joined or copied in user space on the way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from hastack_blockrepl import wire as W
from hastack_blockrepl.engine import Engine
from hastack_blockrepl.peer import SERVE_BUDGET, PeerLink, serve_slack
from hastack_blockrepl.rxbuf import BIG, keep_large_buffers
from hastack_blockrepl.sendq import SendQueue
from hastack_common.logs import kv

log = logging.getLogger(__name__)
LOWAT_MAX = 1 << 20  # the most a wake-up waits for (the kernel grows the receive buffer to match)


_cc_warned: set[str] = set()


def set_congestion_control(sock: socket.socket, name: str) -> None:
    """Use ``name`` on a replication connection ("" keeps the host's default). The host default
    may pace every packet (BBR), which on a short, dedicated link costs CPU for nothing; a name
    the kernel does not offer is logged once and the connection keeps the default."""
    if not name:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
    except OSError as exc:
        if name not in _cc_warned:
            _cc_warned.add(name)
            log.warning(
                "net.congestionControl not available: the replication link keeps the host's default",
                extra=kv(congestion_control=name, error=str(exc)),
            )


class LinkProtocol(asyncio.BufferedProtocol):
    """One TCP connection; authenticates, then hands frames to its PeerLink."""

    def __init__(self, node: Replication, expect: int | None) -> None:
        self.node, self.expect = node, expect
        self.enc, self.dec = W.Encoder(None), W.Decoder(None, max_payload=4096)
        self.nonce = os.urandom(W.NONCE_LEN)
        self.peer_nonce = b""
        self.peer_id: int | None = None
        self.link: PeerLink | None = None
        self.transport: asyncio.Transport | None = None
        self.q: SendQueue | None = None
        self.version = W.VERSION_MIN
        self.flush_scheduled = False
        loop = asyncio.get_event_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.ready: asyncio.Future[None] = loop.create_future()  # authenticated, or closed
        self.authed = False
        self.lowat = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        cfg = self.node.engine.cfg
        tsock = transport.get_extra_info("socket")
        # ours to sendmsg on; the transport reads. Socket buffers stay autotuned: a fixed
        # SO_SNDBUF/SO_RCVBUF (capped at net.core.[rw]mem_max) made 1 MiB writes 5x slower.
        sock = socket.socket(fileno=os.dup(tsock.fileno()))
        sock.setblocking(False)
        set_congestion_control(sock, cfg.net.congestion_control)
        self.q = SendQueue(sock, asyncio.get_event_loop(), self._congested, self._send_failed)
        self.send(self.enc.encode(W.HELLO, W.hello_payload(cfg.node_id, cfg.resource, self.nonce)))
        self.flush()
        asyncio.get_event_loop().call_later(cfg.net.connect_timeout, self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        if not self.authed:
            self.abort("handshake timed out")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.q is not None:
            self.q.close()
        for fut in (self.closed, self.ready):
            if not fut.done():
                fut.set_result(None)
        if self.link is not None:
            self.link.detached(self, str(exc) if exc else "connection closed")

    def _congested(self, on: bool) -> None:
        if self.link:
            self.node.engine.set_congested(self.link.node_id, on)

    def _send_failed(self, exc: OSError) -> None:
        self.abort(f"send failed: {exc}")

    def buffered_bytes(self) -> int:
        return self.q.size if self.q is not None else 0

    def send(self, parts: list[Any], now: bool = False) -> None:
        """Queue a frame; a large one (or ``now``) goes to the socket at once (the peer starts on
        it while this replica writes locally, and no view of a reused buffer outlives the call)."""
        if self.q is None:
            return
        if self.q.add(parts) >= BIG or now:
            self.q.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            if not self.node.engine.after_read(self.flush):  # (sent at the end of the read being handled)
                self.node.engine.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.q is not None:
            self.q.flush()

    def abort(self, why: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing replication connection", extra=kv(peer=self.peer_id, reason=why))
            self.flush()
            self.transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.dec.get_buffer()

    def eof_received(self) -> bool | None:
        return None

    def buffer_updated(self, nbytes: int) -> None:
        self.dec.rx.updated(nbytes)
        self.handle_read()
        loop = self.node.engine.loop
        until = loop.time() + SERVE_BUDGET  # then timers get their turn, however the frames come
        while self.link is not None and self.link.may_serve():
            seq, left = self.dec.seq, min(until - loop.time(), serve_slack(loop, SERVE_BUDGET, (self.transport,)))
            if left <= 0:
                break
            why = self.link.serve(left)
            self.handle_read()  # the frame that stopped it, if any
            if why != "frame" or self.dec.seq == seq:
                break

    def handle_read(self) -> None:
        """Handle the frames in the receive buffer (the compiled paths first), then send what
        that queued."""
        self.node.engine.read_begins()
        try:
            if self.link is not None:
                self.link.take_frames(self.dec)
            for f in self.dec.frames():
                if self.link is not None:
                    self.link.on_frame(f)
                else:
                    self._handshake(f)
                if self.transport is None or self.transport.is_closing():
                    break
        except W.AuthError as exc:
            self.node.engine.m.auth_failures.inc()
            log.warning("replication peer failed authentication", extra=kv(error=str(exc)))
            self.abort(str(exc))
        except (W.WireError, ValueError, KeyError, TypeError) as exc:
            log.warning("malformed replication traffic", extra=kv(peer=self.peer_id, error=str(exc)))
            self.abort(str(exc))
        finally:
            try:
                if self.link is not None:
                    self.link.flush_acks()
            finally:
                self.node.engine.read_ends()  # what handling it queued: sent now, no extra event-loop turn
        self._set_lowat(self.dec.rx.big_missing())

    def _set_lowat(self, missing: int) -> None:
        """While a large frame is arriving, have the kernel wake this replica only when the rest
        of it is here (SO_RCVLOWAT), not per segment: a 1 MiB write then costs one wake-up,
        one event-loop turn and one read instead of several. Closing or a reset still wakes."""
        want = min(missing, LOWAT_MAX) or 1
        if want != self.lowat and self.q is not None and not self.q.closed:
            try:
                self.q.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                self.lowat = want
            except OSError:
                pass

    def _handshake(self, f: W.Frame) -> None:
        cfg = self.node.engine.cfg
        if f.type == W.HELLO and self.peer_id is None:
            nonce, meta = W.parse_hello(f.payload)
            pid = int(meta["node"])
            if meta.get("resource") != cfg.resource:
                raise W.WireError(f"peer serves resource {meta.get('resource')!r}, not {cfg.resource!r}")
            if pid not in self.node.links or (self.expect is not None and pid != self.expect):
                raise W.AuthError(f"node {pid} is not a configured peer")
            self.version = W.negotiate([int(v) for v in meta["versions"]])
            self.peer_id, self.peer_nonce = pid, nonce
            self.send(
                self.enc.encode(W.AUTH, W.auth_response(self.node.secret, nonce, self.nonce, cfg.node_id, cfg.resource))
            )
            nonces = {cfg.node_id: self.nonce, pid: nonce}
            self.enc.set_key(W.direction_key(self.node.secret, cfg.node_id, nonces, self.version), self.version)
            self._peer_key = W.direction_key(self.node.secret, pid, nonces, self.version)
        elif f.type == W.AUTH and self.peer_id is not None and not self.authed:
            W.check_auth(self.node.secret, self.nonce, self.peer_nonce, self.peer_id, cfg.resource, f.payload)
            self.dec.set_key(self._peer_key, self.version)
            self.dec.max_payload = W.MAX_PAYLOAD
            self.authed = True
            assert self.q is not None
            self.q.set_limits(high=cfg.net.max_buffer, low=cfg.net.max_buffer // 2)
            self.link = self.node.links[self.peer_id]
            self.link.attached(self)
            if not self.ready.done():
                self.ready.set_result(None)
        else:
            raise W.WireError(f"unexpected {W.NAMES.get(f.type, f.type)} frame during the handshake")


class Replication:
    """All peer links of this replica plus the listener."""

    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine, self.secret = engine, secret
        self.links: dict[int, PeerLink] = {}
        for p in engine.cfg.peers:
            self.links[p.node_id] = PeerLink(self, p.node_id, p.name, p.address)  # type: ignore[arg-type]
        engine.links = self.links  # type: ignore[assignment]
        self.server: asyncio.AbstractServer | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.on_pri_lost: Any = None
        self.on_verify: Any = None

    async def start(self) -> None:
        keep_large_buffers()
        host, _, port = self.engine.cfg.net.listen.rpartition(":")
        loop = asyncio.get_running_loop()
        if self.links:
            self.server = await loop.create_server(
                lambda: LinkProtocol(self, None), host.strip("[]"), int(port), reuse_address=True
            )
        for link in self.links.values():
            self.tasks.append(self.engine.spawn(link.run()))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        if self.server is not None:
            self.server.close()
        for link in self.links.values():
            if link.proto is not None:
                link.send_settled()
                link.proto.abort("shutting down")

    def new_protocol(self, expect: int | None) -> LinkProtocol:
        return LinkProtocol(self, expect)

    def pri_lost(self, peer: int, why: str) -> None:
        if self.on_pri_lost:
            self.on_pri_lost(peer, why)

    def verify_result(self, link: PeerLink, offset: int, length: int, same: bool) -> None:
        if self.on_verify:
            self.on_verify(link, offset, length, same)
