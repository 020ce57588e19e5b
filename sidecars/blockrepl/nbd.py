"""The NBD frontend: an asyncio server on a Unix socket (or loopback TCP), Primary only.

Each connection reads into preallocated buffers (a BufferedProtocol; a large WRITE payload
is read straight into a buffer of its own, rxbuf.py), parses every complete request in a
socket read, serves reads inline, hands writes to the engine, and answers with one write per
batch. Many requests are in flight per
connection; reading pauses above a bound or while a peer link is congested (back-pressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from hastack_blockrepl import fastpath, primary
from hastack_blockrepl import nbdproto as P
from hastack_blockrepl.engine import PRIMARY, Engine
from hastack_blockrepl.rxbuf import BIG, RxBuffer, keep_large_buffers
from hastack_blockrepl.wire import unpack_ids  # 8-byte big-endian ids: the batch's cookies too
from hastack_common.config_blockrepl import AL_EXTENT
from hastack_common.logs import kv

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 512
FLAGS = P.TF_HAS_FLAGS | P.TF_SEND_FLUSH | P.TF_SEND_FUA | P.TF_SEND_TRIM | P.TF_SEND_WRITE_ZEROES | P.TF_SEND_FAST_ZERO


class NbdConnection(asyncio.BufferedProtocol):
    def __init__(self, server: NbdServer) -> None:
        self.server, self.engine = server, server.engine
        self.hs = P.ServerHandshake(server.exports(), default=server.export_name, refuse=server.refusal)
        self.transport: asyncio.Transport | None = None
        self.rx = RxBuffer()
        self.big_head = b""
        self.out: list[Any] = []
        self.flush_scheduled = False
        self.in_flight = 0
        self.paused = False
        self.closing = False
        self.closed = False
        self.structured = False
        self.counted = False
        self.max_in_flight = MAX_IN_FLIGHT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(self.hs.greeting())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counted:
            self.engine.nbd_clients -= 1
            self.server.conns.discard(self)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._flush_out()
            self.transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.rx.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        rx = self.rx
        rx.updated(nbytes)
        if self.hs.state != "transmission":
            data = bytes(rx.mv[rx.start : rx.end])
            rx.start = rx.end = 0
            out = self.hs.feed(data)
            if out and self.transport:
                self.transport.write(out)
            if self.hs.state == "closed":
                log.info("NBD client closed during negotiation", extra=kv(reason=self.hs.reason))
                self.close()
                return
            if self.hs.state != "transmission":
                return
            self.structured = self.hs.structured
            self.counted = True
            self.engine.nbd_clients += 1
            self.server.conns.add(self)
            rest = bytes(self.hs.buf)
            self.hs.buf.clear()
            rx.get_buffer()[: len(rest)] = rest  # at most one read's worth: fits the empty buffer
            rx.updated(len(rest))
        primary.serve_read(self)

    def process(self) -> None:
        """Serve the requests in the receive buffer, send what that answered, pause if need be."""
        rx = self.rx
        if self.closing:
            rx.start = rx.end = 0
            if rx.big is not None:
                rx.take_big()
            return
        try:
            self._parse()
        except P.ProtocolError as exc:
            log.warning("NBD protocol error: disconnecting client", extra=kv(error=str(exc)))
            self.close()
            return
        self._flush_out()
        self._maybe_pause()

    def _parse(self) -> None:
        """Serve every complete request; a large WRITE still arriving gets a buffer of its own."""
        rx, size = self.rx, self.engine.size
        if rx.big is not None:
            if not rx.big_done():
                return
            _, flags, cmd, cookie, offset, length = P.REQ.unpack(self.big_head)
            req = P.Request(cmd, flags, cookie, offset, length, rx.take_big())
            req.error = P.validate(req, size)
            self._handle(req)
        if self.engine.reads_locally():  # runs of plain reads: answered in one compiled call
            replies, rx.start, n = fastpath.reads(
                self.engine.fd, rx.buf, rx.start, rx.end, size, self.structured, fastpath.MAX_COUNT,
                fastpath.MAX_READ_BYTES,
            )  # fmt: skip
            if n:
                self.engine.counters["reads"] += n
                self.out.append(replies)
        self._scan()
        reqs, rx.start = P.parse_requests(rx.mv[: rx.end], rx.start, size)  # the rest; raises on bad framing
        for r in reqs:
            self._handle(r)
        if rx.available >= P.REQ.size:
            _, _, cmd, _, _, length = P.REQ.unpack_from(rx.buf, rx.start)
            if cmd == P.CMD_WRITE:  # parse_requests stopped here: the payload is not all here
                if length >= BIG:
                    self.big_head = bytes(rx.mv[rx.start : rx.start + P.REQ.size])
                    rx.start_big(P.REQ.size, length)
                else:
                    rx.ensure_room(P.REQ.size + length)

    def _scan(self) -> None:
        """The small-write path: runs of plain writes go to the engine as write batches (which
        hands them back one by one when it cannot take a batch now)."""
        rx, size = self.rx, self.engine.size
        items, pos = fastpath.scan(
            rx.buf, rx.start, rx.end, size, AL_EXTENT, fastpath.MAX_WRITE, fastpath.MAX_COUNT, fastpath.MAX_BYTES
        )
        for it in items:
            if len(it) == 3:
                self._batch(*it)
                continue
            cmd, flags, cookie, offset, length, at = it
            req = P.Request(cmd, flags, cookie, offset, length, rx.mv[at : at + length] if cmd == P.CMD_WRITE else b"")
            req.error = P.validate(req, size)
            self._handle(req)
        rx.start = pos

    def _batch(self, payload: bytes, cookies: bytes, exts: tuple[int, ...]) -> None:
        n = len(cookies) // 8
        self.in_flight += n
        if self.engine.write_batch(payload, n, exts, self.batch_done(cookies, n)):
            return
        self.in_flight -= n  # the per-request path takes them (a hold, a new activity-log extent)
        data = memoryview(payload)
        pos = fastpath.HEAD.size + fastpath.ENTRY.size * n
        for cookie, (offset, length) in zip(unpack_ids(cookies), fastpath.entries(payload), strict=True):
            self._handle(P.Request(P.CMD_WRITE, 0, cookie, offset, length, data[pos : pos + length]))
            pos += length

    def batch_done(self, cookies: bytes, n: int) -> Any:
        """The completion of a write batch of ``n`` requests (their 8-byte ``cookies``)."""

        def done(err: int) -> None:
            if err:
                for cookie in unpack_ids(cookies):
                    self._completion(cookie)(err)
                return
            self.batch_answered(fastpath.replies(cookies, self.structured), n)

        return done

    def batch_answered(self, replies: bytes, n: int) -> None:
        """``n`` writes succeeded: their ``replies`` go out."""
        self.in_flight -= n
        if self.closed:
            return
        self.out.append(replies)
        self._completed()

    def _handle(self, r: P.Request) -> None:
        cmd, cookie = r.cmd, r.cookie
        if r.error:
            self.out.append(P.reply(cookie, r.error, self.structured, "request out of range or malformed"))
            return
        if cmd == P.CMD_DISC:
            self.closing = True
            self._maybe_close()
            return
        err = self.engine.check_io()
        if err:
            why = "this replica is not Primary" if self.engine.role != PRIMARY else "local disk unavailable"
            self.out.append(P.reply(cookie, err, self.structured, why))
            return
        if cmd == P.CMD_READ:
            try:
                data = self.engine.read(r.offset, r.length)
            except OSError:
                self.out.append(P.reply(cookie, P.EIO, self.structured, "read error on the backing disk"))
                return
            if data is None:  # Diskless: served by an UpToDate peer
                self.in_flight += 1
                self.engine.read_remote(r.offset, r.length, self._read_completion(cookie, r.offset, r.length))
                return
            self.out.append(P.read_reply_header(cookie, r.offset, r.length, self.structured))
            self.out.append(data)
            return
        if cmd == P.CMD_CACHE:
            self.out.append(P.reply(cookie, 0, self.structured))
            return
        self.in_flight += 1
        done = self._completion(cookie)
        fua = bool(r.flags & P.CMDF_FUA)
        if cmd == P.CMD_WRITE:
            self.engine.write(r.offset, r.data, fua, done)
        elif cmd == P.CMD_FLUSH:
            self.engine.flush(done)
        elif cmd == P.CMD_TRIM:
            self.engine.zero(r.offset, r.length, fua, done, trim=True)
        else:
            self.engine.zero(r.offset, r.length, fua, done)

    def _completion(self, cookie: int) -> Any:
        def done(err: int) -> None:
            self.in_flight -= 1
            if self.closed:
                return
            self.out.append(P.reply(cookie, err, self.structured, "I/O error" if err else ""))
            self._completed()

        return done

    def _completed(self) -> None:
        self._schedule_flush()
        self._maybe_resume()
        if self.closing:
            self._maybe_close()

    def _read_completion(self, cookie: int, offset: int, length: int) -> Any:
        def done(err: int, data: bytes) -> None:
            if err or len(data) != length:
                self._completion(cookie)(err or P.EIO)
                return
            self.in_flight -= 1
            if self.closed:
                return
            self.out.append(P.read_reply_header(cookie, offset, length, self.structured))
            self.out.append(data)
            self._schedule_flush()

        return done

    def _schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            if not self.engine.after_read(self._flush_out):
                self.engine.loop.call_soon(self._flush_out)

    def _flush_out(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and not self.closed:
            self.transport.writelines(self.out)
        self.out = []

    def _maybe_close(self) -> None:
        if self.in_flight == 0:
            self.close()

    def _maybe_pause(self) -> None:
        if self.paused or self.transport is None:
            return
        if self.in_flight >= MAX_IN_FLIGHT or self.engine.congested():
            self.paused = True
            self.transport.pause_reading()
            if self.engine.congested():
                self.engine.on_uncongested(self._maybe_resume)

    def _maybe_resume(self) -> None:
        if self.paused and self.in_flight < MAX_IN_FLIGHT // 2 and not self.engine.congested():
            self.paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()


class NbdServer:
    def __init__(self, engine: Engine, socket_path: str | None, listen: str | None, export_name: str) -> None:
        self.engine, self.socket_path, self.listen, self.export_name = (
            engine,
            socket_path,
            listen,
            export_name,
        )
        self.servers: list[asyncio.AbstractServer] = []
        self.conns: set[NbdConnection] = set()

    def exports(self) -> dict[str, P.Export]:
        desc = f"hastack blockrepl {self.engine.cfg.resource} node {self.engine.cfg.node_id}"
        return {self.export_name: P.Export(self.export_name, self.engine.size, FLAGS, desc)}

    def refusal(self) -> str:
        if self.engine.role != PRIMARY:
            return (
                f"replica {self.engine.cfg.node_id} of {self.engine.cfg.resource} is Secondary: only the "
                "Primary serves NBD (promote it with `primary`, or connect to the Primary)"
            )
        return ""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        keep_large_buffers()
        if self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            os.makedirs(os.path.dirname(self.socket_path) or ".", exist_ok=True)
            self.servers.append(await loop.create_unix_server(lambda: NbdConnection(self), self.socket_path))
            os.chmod(self.socket_path, 0o660)
        if self.listen:
            host, _, port = self.listen.rpartition(":")
            self.servers.append(await loop.create_server(lambda: NbdConnection(self), host.strip("[]"), int(port)))

    def disconnect_all(self) -> int:
        n = len(self.conns)
        for c in list(self.conns):
            c.close()
        return n

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        self.disconnect_all()
        if self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
