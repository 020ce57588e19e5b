"""The blockrepl process: attach the disk, serve NBD, replicate, answer the control socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from hastack_blockrepl import cron, fastpath, sbhandler, verify
from hastack_blockrepl.control import Control
from hastack_blockrepl.disk import attach
from hastack_blockrepl.engine import PRIMARY, Engine
from hastack_blockrepl.fence import FencePeerHandler, FenceRequest, fence_until_done, handler_for
from hastack_blockrepl.metrics import Metrics
from hastack_blockrepl.nbd import NbdServer
from hastack_blockrepl.peerconn import Replication
from hastack_blockrepl.reload import plan_reload
from hastack_common.config_blockrepl import BlockreplConfig, ConfigError, load
from hastack_common.ctlsock import ControlServer, EventBus
from hastack_common.logs import kv

log = logging.getLogger(__name__)
PERSIST_PERIOD = 1.0
RELOAD_PERIOD = 1.0


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read_secret(path: str) -> bytes:
    return Path(path).read_bytes().strip()


class Daemon:
    def __init__(
        self, cfg: BlockreplConfig, fence_handler: FencePeerHandler | None = None, path: str | None = None
    ) -> None:
        self.cfg, self.path = cfg, path
        self.builtin_fence = fence_handler is None
        self.fence_handler = fence_handler
        if fence_handler is None:
            self.fence_handler = handler_for(cfg.handlers)
        self.stop_event = asyncio.Event()

    async def run(self) -> int:
        cfg = self.cfg
        secret = await asyncio.to_thread(_read_secret, cfg.net.secret_file) if cfg.peers else b""
        if cfg.sync.verify_schedule:
            try:
                cron.parse(cfg.sync.verify_schedule)
            except cron.CronError as exc:
                raise ValueError(f"sync.verifySchedule: {exc}") from None
        if cfg.peers and len(secret) < 16:
            raise ValueError(f"net.secretFile {cfg.net.secret_file} holds {len(secret)} bytes; use at least 16")
        backing, sb, created = await asyncio.to_thread(attach, cfg.disk.path, cfg.disk.metadata, cfg.node_id, cfg.size)
        events = EventBus()
        metrics = Metrics(cfg.resource)
        engine = Engine(cfg, backing, sb, events, metrics)
        await asyncio.to_thread(engine.load)
        repl = Replication(engine, secret)
        repl.on_verify = lambda link, off, ln, same: verify.on_result(engine, link, off, ln, same)
        repl.on_pri_lost = self._pri_lost
        engine.fence = lambda pid: engine.spawn(self._fence(engine, repl, pid))
        self.engine, self.repl = engine, repl
        nbd = NbdServer(engine, cfg.nbd.socket, cfg.nbd.listen, cfg.nbd.export_name)
        ctl = ControlServer(cfg.control_socket, Control(engine, repl, nbd).handlers(), events)
        await nbd.start()
        await ctl.start()
        await repl.start()
        http = self._start_metrics(metrics)
        if self.path:
            engine.spawn(self._watch_config(self.path, engine, repl))
        engine.spawn(self._verify_on_schedule(engine, repl))
        metrics.update(engine)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        log.info(
            "blockrepl running",
            extra=kv(
                resource=cfg.resource,
                node=cfg.node_id,
                size=engine.size,
                created_metadata=created,
                disk=sb.disk_state,
                nbd=cfg.nbd.socket or cfg.nbd.listen,
                peers=len(cfg.peers),
                write_path="compiled" if fastpath.COMPILED else "python (the extension is not built: slower)",
            ),
        )
        try:
            while not self.stop_event.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), PERSIST_PERIOD)
                if engine.bm_dirty and not engine.diskless():
                    await engine.persist_quietly()
                engine.status()  # refreshes per-peer gauges
        finally:
            log.info("stopping")
            await nbd.close()
            await repl.close()
            await ctl.close()
            if http is not None:
                http.shutdown()
            async with engine._md_lock:
                try:
                    await asyncio.to_thread(engine.close_clean)
                except OSError as exc:
                    log.error("could not record a clean stop in the metadata", extra=kv(error=str(exc)))
            backing.close()
        return 0

    async def _watch_config(self, path: str, engine: Engine, repl: Replication) -> None:
        """Reload on change (a ConfigMap update swaps the file): DESIGN "Configuration"."""
        last = _signature(path)
        while True:
            await asyncio.sleep(RELOAD_PERIOD)
            sig = _signature(path)
            if sig == last:
                continue
            last = sig
            try:
                new = await asyncio.to_thread(load, path)
            except ConfigError as exc:
                log.error("config change refused; running on with the previous one", extra=kv(error=str(exc)))
                engine.events.publish("config-error", error=str(exc))
                continue
            plan = plan_reload(self.cfg, new)
            self.cfg = engine.cfg = plan.config
            engine.protocol = plan.config.net.protocol
            for p in plan.config.peers:
                link = repl.links.get(p.node_id)
                if link is not None:
                    link.name, link.address = p.name or link.name, p.address
            if self.builtin_fence:
                self.fence_handler = handler_for(plan.config.handlers)
            if plan.reconnect:
                for link in repl.links.values():
                    if link.proto is not None:
                        link.proto.abort(f"replication protocol changed to {engine.protocol}")
            log.info("config reloaded", extra=kv(applied=",".join(plan.applied) or "-",
                                                  restart_needed=",".join(plan.deferred) or "-"))  # fmt: skip
            engine.events.publish("config-reloaded", applied=plan.applied, restart_needed=plan.deferred)

    async def _verify_on_schedule(self, engine: Engine, repl: Replication) -> None:
        """``sync.verifySchedule`` (cron, UTC): the Primary verifies against every connected peer."""
        while True:
            expr = self.cfg.sync.verify_schedule
            if not expr:
                await asyncio.sleep(30)
                continue
            try:
                sched = cron.parse(expr)
            except cron.CronError as exc:
                log.error("sync.verifySchedule ignored", extra=kv(error=str(exc)))
                await asyncio.sleep(60)
                continue
            now = datetime.now(UTC)
            due = sched.next_after(now)
            await asyncio.sleep(min((due - now).total_seconds(), 60))  # re-read the schedule every minute
            if datetime.now(UTC) >= due and engine.role == PRIMARY:
                for link in repl.links.values():
                    if link.replicating:
                        verify.start_verify(engine, link)
                engine.events.publish("verify-scheduled", schedule=expr)

    def _start_metrics(self, metrics: Metrics):  # type: ignore[no-untyped-def]
        listen = self.cfg.metrics.listen
        if not listen:
            return None
        from prometheus_client import start_http_server

        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), host.strip("[]") or "0.0.0.0", registry=metrics.registry)
        return server

    async def _fence(self, engine: Engine, repl: Replication, peer: int) -> None:
        key = f"fence:{peer}"
        link = repl.links[peer]
        if self.fence_handler is None:
            engine.release(key)
            return
        req = FenceRequest(self.cfg.resource, self.cfg.node_id, peer, link.name, link.address)
        res = await fence_until_done(
            self.fence_handler, req, lambda: engine.role == PRIMARY and key in engine.gate.submit
        )
        if res.ok:
            engine.events.publish("peer-fenced", peer=peer, detail=res.detail)
            engine.release(key)

    def _pri_lost(self, peer: int, why: str) -> None:
        argv = self.cfg.handlers.pri_lost_after_sb
        self.engine.events.publish("pri-lost-after-sb", peer=peer, reason=why)
        log.error("this Primary lost a split brain", extra=kv(peer=peer, reason=why))
        if argv:
            link = self.repl.links[peer]
            req = sbhandler.PriLost(self.cfg.resource, self.cfg.node_id, peer, link.name, link.address, why)
            self.engine.spawn(self._run_pri_lost(argv, req))

    async def _run_pri_lost(self, argv: list[str], req: sbhandler.PriLost) -> None:
        code = await sbhandler.run(argv, req, self.cfg.handlers.fence_timeout)
        self.engine.events.publish("pri-lost-after-sb-handler", peer=req.peer_node_id, exit=code)
