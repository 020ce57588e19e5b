"""`hastack mon --config FILE`: run the probes of one or more ServiceMonitors.

Serves /metrics over HTTP and a control socket (``status``, ``history``, ``reload``, ``events``),
and reloads the configuration file when it changes (the operator updates a mounted ConfigMap).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import signal
import sys

from aiohttp import web

from hastack_common import logs
from hastack_common.config_mon import MonConfig, MonitorConfig
from hastack_common.ctlsock import CommandError, ControlServer, EventBus
from hastack_common.durations import parse_duration
from hastack_common.logs import kv
from hastack_mon import config as config_file
from hastack_mon.apisource import ApiSource
from hastack_mon.k8s import KubeEventSink
from hastack_mon.metrics import Metrics
from hastack_mon.monitor import Runtime
from hastack_mon.publish import PodRef, StatusPublisher, pod_from_env

log = logging.getLogger("hastack_mon")
RELOAD_POLL = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Mon:
    def __init__(
        self,
        path: str | None,
        socket: str | None,
        metrics_address: str | None,
        api: ApiSource | None = None,
        pod: PodRef | None = None,
    ) -> None:
        self.path, self.socket_override, self.metrics_override = path, socket, metrics_address
        self.api = api
        self.api_monitors: list[MonitorConfig] = []
        self.api_digest = ""
        self.metrics = Metrics()
        self.bus = EventBus()
        self.runtime = Runtime(self.metrics, self.bus, KubeEventSink())
        self.digest = ""
        self.control: ControlServer | None = None
        self.web: web.AppRunner | None = None
        self.metrics_url = ""
        self.publisher = (
            StatusPublisher(
                pod,
                self.runtime.status,
                enabled=lambda: self.runtime.config.publish_status,
                on_result=lambda result: self.metrics.status_publishes.labels(result).inc(),
            )
            if pod is not None
            else None
        )

    async def load(self, first: bool) -> str:
        """Read and apply the file; on a bad file keep the running configuration."""
        try:
            if self.path is None:
                cfg, digest = MonConfig(), "no file"
            else:
                cfg, digest = await asyncio.to_thread(config_file.read, self.path)
        except config_file.ConfigError as exc:
            self.metrics.config_reloads.labels("error").inc()
            if first:
                raise
            log.error("configuration refused, keeping the running one", extra=kv(error=str(exc)))
            self.bus.publish("config", result="error", error=str(exc))
            raise CommandError(str(exc)) from exc
        if self.api is not None:
            cfg = cfg.model_copy(update={"monitors": [*cfg.monitors, *self.api_monitors]})
            digest = hashlib.sha256((digest + self.api_digest).encode()).hexdigest()
        if digest == self.digest:
            return "unchanged"
        if self.socket_override:
            cfg = cfg.model_copy(update={"control_socket": self.socket_override})
        if self.metrics_override:
            cfg = cfg.model_copy(update={"metrics_address": self.metrics_override})
        await self.runtime.apply(cfg)
        self.digest = digest
        self.metrics.config_reloads.labels("applied").inc()
        self.bus.publish("config", result="applied", digest=digest[:12])
        return "applied"

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL)
            with contextlib.suppress(CommandError):
                await self.load(first=False)

    async def refresh_api(self) -> None:
        """Read the ServiceMonitors from the API; on an API error keep the running set."""
        assert self.api is not None
        try:
            self.api_monitors, self.api_digest = await self.api.read()
        except Exception as exc:
            log.error("cannot list ServiceMonitors, keeping the running set", extra=kv(error=str(exc)))
            self.metrics.config_reloads.labels("error").inc()

    async def watch_api(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.refresh_api()
            with contextlib.suppress(CommandError):
                await self.load(first=False)

    async def serve_metrics(self, address: str) -> None:
        async def handler(_: web.Request) -> web.Response:
            body = await asyncio.to_thread(self.metrics.render)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", handler)
        app.router.add_get("/healthz", lambda _: _ok())
        host, _, port = address.rpartition(":")
        self.web = web.AppRunner(app, access_log=None)
        await self.web.setup()
        site = web.TCPSite(self.web, host.strip("[]") or "0.0.0.0", int(port))
        await site.start()
        bound = self.web.addresses[0]
        self.metrics_url = f"http://{bound[0]}:{bound[1]}/metrics"
        log.info("metrics served", extra=kv(url=self.metrics_url))

    async def run(self, stop: asyncio.Event, api_poll: float = 5.0) -> None:
        if self.api is not None:
            await self.refresh_api()
        await self.load(first=True)
        cfg = self.runtime.config
        await self.serve_metrics(cfg.metrics_address)

        async def status(args: dict[str, object]) -> object:
            ns, name = args.get("namespace"), args.get("monitor")
            return self.runtime.status(str(ns) if ns else None, str(name) if name else None)

        async def history(args: dict[str, object]) -> object:
            return list(self.runtime.history)

        async def reload(args: dict[str, object]) -> object:
            return await self.load(first=False)

        async def info(args: dict[str, object]) -> object:
            refused = self.api.errors if self.api is not None else {}
            return {
                "metrics": self.metrics_url,
                "config": self.path,
                "probes": len(self.runtime.probes),
                "refusedServiceMonitors": refused,
            }

        handlers = {"status": status, "history": history, "reload": reload, "info": info}
        self.control = ControlServer(cfg.control_socket, handlers, self.bus)  # type: ignore[arg-type]
        await self.control.start()
        watcher = asyncio.create_task(self.watch())
        api_watcher = asyncio.create_task(self.watch_api(api_poll)) if self.api is not None else None
        publisher = asyncio.create_task(self.publisher.run()) if self.publisher is not None else None
        fields = kv(config=self.path, socket=cfg.control_socket, probes=len(self.runtime.probes))
        log.info("mon started", extra=fields)
        try:
            await stop.wait()
        finally:
            watcher.cancel()
            for task in (api_watcher, publisher):
                if task is not None:
                    task.cancel()
            await self.runtime.close()
            await self.control.close()
            if self.web is not None:
                await self.web.cleanup()


async def _ok() -> web.Response:
    return web.Response(text="ok\n")


async def amain(ns: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    api = (
        ApiSource(None if ns.all_namespaces else ns.watch_namespace)
        if (ns.watch_namespace or ns.all_namespaces)
        else None
    )
    mon = Mon(ns.config, ns.socket, ns.metrics_address, api, pod_from_env())
    try:
        await mon.run(stop, parse_duration(ns.api_poll))
    except config_file.ConfigError as exc:
        log.error("cannot start", extra=kv(error=str(exc)))
        return 2
    return 0


def check(path: str | None) -> int:
    """``--check``: 0 and a summary for a valid file, 2 and every bad field otherwise."""
    if not path:
        print("hastack mon --check needs --config FILE", file=sys.stderr)
        return 2
    try:
        cfg, _ = config_file.read(path)
    except config_file.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for m in cfg.monitors:
        probes = ", ".join(f"{p.name} ({p.kind} every {p.interval})" for p in m.spec.probes)
        receivers = ", ".join(f"{r.name} ({r.type})" for r in m.spec.receivers) or "none"
        print(f"{m.namespace}/{m.name}: probes {probes}; receivers {receivers}")
    print(f"ok: {len(cfg.monitors)} monitor(s), {sum(len(m.spec.probes) for m in cfg.monitors)} probe(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hastack mon", description=__doc__)
    p.add_argument("--config", help="mon configuration file (YAML, MonConfig)")
    p.add_argument("--socket", help="control socket path (overrides controlSocket)")
    p.add_argument("--metrics-address", help="host:port for /metrics (overrides metricsAddress; 0: any port)")
    p.add_argument("--watch-namespace", help="also run the ServiceMonitors of this namespace, read from the API")
    p.add_argument("--all-namespaces", action="store_true", help="also run every namespace's ServiceMonitors")
    p.add_argument("--api-poll", default="5s", help="how often the API is read (default 5s)")
    p.add_argument("--check", action="store_true", help="validate --config, print what it runs, and exit")
    ns = p.parse_args(argv)
    if ns.check:
        return check(ns.config)
    if not (ns.config or ns.watch_namespace or ns.all_namespaces):
        p.error("give --config FILE, or --watch-namespace NS / --all-namespaces to read ServiceMonitors from the API")
    logs.setup()
    return asyncio.run(amain(ns))


if __name__ == "__main__":
    raise SystemExit(main())
