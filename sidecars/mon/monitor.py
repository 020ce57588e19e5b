"""The running monitors: probe schedules, results folded into alert state, alerts to receivers.

``Runtime.apply(config)`` reconciles the running set with a (re)loaded configuration: probes
whose spec is unchanged keep running and keep their state; changed ones restart with their
state kept; removed ones stop and their series are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hastack_common.config_mon import MonConfig, MonitorConfig, Probe, Receiver
from hastack_common.ctlsock import EventBus
from hastack_common.durations import parse_duration
from hastack_common.logs import kv
from hastack_mon.alerts import Action, DepState, ProbeState, Rule, evaluate, monitor_state
from hastack_mon.metrics import Metrics
from hastack_mon.probes import Prober, Result, target_host
from hastack_mon.receivers import EventSink, Notification, Worker, rfc3339
from hastack_mon.scheduler import Schedule, probe_loop

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # namespace, monitor, probe
HISTORY = 200


@dataclass
class ProbeRun:
    monitor: MonitorConfig
    probe: Probe
    task: asyncio.Task[None] | None = None
    state: ProbeState = field(default_factory=ProbeState)
    last: Result | None = None
    outage_started: float = 0.0


@dataclass
class MonitorRun:
    config: MonitorConfig
    rule: Rule
    workers: list[Worker] = field(default_factory=list)


class ActiveRole:
    """``alerting: active``: this member alerts only while heartbeat's state file says active."""

    def __init__(self, path: str, ttl: float = 1.0) -> None:
        self.path, self.ttl = path, ttl
        self._at, self._value = -1e9, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._at >= self.ttl:  # a small file on tmpfs, re-read at most once a second
            self._at = now
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                self._value = data.get("role") == "active"  # hastack_common.state_file.GateState
            except (OSError, ValueError, AttributeError):
                self._value = False
        return self._value


class Runtime:
    def __init__(
        self,
        metrics: Metrics,
        events: EventBus | None = None,
        event_sink: EventSink | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.metrics, self.bus, self.event_sink, self.clock = metrics, events or EventBus(), event_sink, clock
        self.prober = Prober()
        self.probes: dict[Key, ProbeRun] = {}
        self.monitors: dict[tuple[str, str], MonitorRun] = {}
        self.config = MonConfig()
        self.cap = asyncio.Semaphore(self.config.max_concurrency)
        self.may_alert: Callable[[], bool] = lambda: True
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.rng = random.Random(seed)
        self._dirty: set[tuple[str, str]] = set()
        self._status_task: asyncio.Task[None] | None = None

    # -- configuration -------------------------------------------------------------------
    async def apply(self, config: MonConfig) -> None:
        if config.max_concurrency != self.config.max_concurrency:
            self.cap = asyncio.Semaphore(config.max_concurrency)  # running probes finish on the old one
        self.config = config
        self.may_alert = (lambda: True) if config.alerting == "always" else ActiveRole(config.state_file)
        old = {(w.namespace, w.monitor, w.spec.name): w for run in self.monitors.values() for w in run.workers}
        self.monitors = {}
        wanted: dict[Key, tuple[MonitorConfig, Probe]] = {}
        for m in config.monitors:
            workers = [self._worker(m, r, old) for r in m.spec.receivers]
            self.monitors[(m.namespace, m.name)] = MonitorRun(m, Rule.from_spec(m.spec.alert), workers)
            for p in m.spec.probes:
                wanted[(m.namespace, m.name, p.name)] = (m, p)
        for w in old.values():
            await w.stop()
        for key in [k for k in self.probes if k not in wanted]:
            await self._stop(key)
            for w in self.monitors[key[:2]].workers if key[:2] in self.monitors else []:
                w.forget(key[2])
            self.metrics.forget(self._labels(key))
            del self.probes[key]
        for key, (m, p) in wanted.items():
            run = self.probes.get(key)
            if run is not None and run.probe == p and run.monitor.spec.target == m.spec.target:
                run.monitor = m
                continue
            if run is not None:
                await self._stop(key)
                if run.probe.kind != p.kind:  # the kind is a label: drop the old series
                    self.metrics.forget(self._labels(key))
            run = self.probes.setdefault(key, ProbeRun(m, p))
            run.monitor, run.probe = m, p
            self._start(key, run)
        self.metrics.probes_configured.set(len(self.probes))
        if self._status_task is None:
            self._status_task = asyncio.create_task(self._publish_status())
        log.info("configuration applied", extra=kv(monitors=len(self.monitors), probes=len(self.probes)))

    def _worker(self, m: MonitorConfig, r: Receiver, old: dict[tuple[str, str, str], Worker]) -> Worker:
        """The running worker when its receiver is unchanged (its queue and firing alerts survive
        a reload), else a new one."""
        w = old.get((m.namespace, m.name, r.name))
        if w is not None and (w.spec, w.uid, w.default_cluster) == (r, m.uid, m.spec.target.ha_cluster):
            del old[(m.namespace, m.name, r.name)]
            return w
        w = Worker(
            r,
            namespace=m.namespace,
            monitor=m.name,
            uid=m.uid,
            metrics=self.metrics,
            http=self.prober.session,
            events=self.event_sink,
            ha_cluster=m.spec.target.ha_cluster,
        )
        w.start()
        return w

    def _start(self, key: Key, run: ProbeRun) -> None:
        p = run.probe
        interval, timeout = parse_duration(p.interval), parse_duration(p.timeout)
        jitter = parse_duration(p.jitter) if p.jitter is not None else interval / 10
        target, ns = run.monitor.spec.target, key[0]

        async def once() -> Result:
            return await self.prober.run(p, target, ns, timeout)

        schedule = Schedule(interval, jitter)
        loop = probe_loop(once, lambda r: self.on_result(key, r), schedule, lambda: self.cap, self.rng)
        run.task = asyncio.create_task(loop, name=f"probe {'/'.join(key)}")

    async def _stop(self, key: Key) -> None:
        task = self.probes[key].task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for key in list(self.probes):
            await self._stop(key)
        for mrun in self.monitors.values():
            for w in mrun.workers:
                await w.stop()
        if self._status_task is not None:
            self._status_task.cancel()
        await self.prober.close()

    # -- results -------------------------------------------------------------------------
    def _labels(self, key: Key) -> tuple[str, str, str, str]:
        run = self.probes.get(key)
        return (*key, run.probe.kind if run else "")

    def dependency_states(self, namespace: str, names: tuple[str, ...]) -> dict[str, DepState]:
        out = {}
        for name in names:
            if (namespace, name) in self.monitors:
                states = [r.state for k, r in self.probes.items() if k[:2] == (namespace, name)]
                out[name] = monitor_state(states)
        return out

    def on_result(self, key: Key, result: Result) -> None:
        run = self.probes.get(key)
        mon = self.monitors.get(key[:2])
        if run is None or mon is None:
            return
        labels = self._labels(key)
        m = self.metrics
        m.success.labels(*labels).set(1 if result.ok else 0)
        m.duration.labels(*labels).observe(result.duration)
        m.last_duration.labels(*labels).set(result.duration)
        if not result.ok:
            m.failures.labels(*labels).inc()
        if result.error:
            m.errors.labels(*labels).inc()
        now = self.clock()
        deps = self.dependency_states(key[0], mon.rule.depends_on)
        before = run.state
        run.state, actions = evaluate(before, mon.rule, result.ok, now, deps=deps, may_alert=self.may_alert())
        run.last = result
        m.consecutive.labels(*labels).set(run.state.consecutive_failures)
        m.set_alert_state(labels, run.state.alert)
        if before.alert != run.state.alert or before.last_result != run.state.last_result:
            self._dirty.add(key[:2])
            self._record(key, run, None)
        for action in actions:
            self._record(key, run, action)
            self._dispatch(key, run, mon, action, result)

    def _record(self, key: Key, run: ProbeRun, action: Action | None) -> None:
        entry = {
            "time": rfc3339(self.clock()),
            "namespace": key[0],
            "monitor": key[1],
            "probe": key[2],
            "action": action.kind if action else "transition",
            "alert": run.state.alert,
            "reason": action.reason if action else run.state.reason,
        }
        self.history.append(entry)
        if action is not None:
            log.info("alert decision", extra=kv(**{k: v for k, v in entry.items() if k != "time"}))
            self.bus.publish("alert", **entry)

    def _dispatch(self, key: Key, run: ProbeRun, mon: MonitorRun, a: Action, result: Result) -> None:
        self.metrics.alerts.labels(*key, a.kind).inc()
        if a.kind == "alert":
            run.outage_started = a.at
        spec = mon.config.spec
        target = target_host(spec.target, key[0]) + (f":{spec.target.port}" if spec.target.port else "")
        n = Notification(
            a.kind,
            key[0],
            key[1],
            key[2],
            run.probe.kind,
            target,
            a.reason,
            result.detail,
            a.at,
            run.outage_started or a.at,
            a.consecutive_failures,
        )
        for w in mon.workers:
            w.submit(n)

    # -- status --------------------------------------------------------------------------
    def probe_status(self, key: Key) -> dict[str, Any]:
        """One entry of ``status.probes[]`` in the CRD's shape (plus ``ok`` and ``latencySeconds``)."""
        run = self.probes[key]
        s, last = run.state, run.last
        result = None
        if s.last_result is not None and last is not None:
            result = f"{'success' if s.last_result else 'failure'}: {last.detail}"[:1024]
        return {
            "name": key[2],
            "ok": s.last_result,
            "lastResult": result,
            "consecutiveFailures": s.consecutive_failures,
            "lastChange": rfc3339(s.last_change) if s.last_change is not None else None,
            "latency": latency(last.duration) if last else None,
            "latencySeconds": round(last.duration, 6) if last else None,
            "alert": s.alert,
            "reason": s.reason[:1024],
        }

    def status(self, namespace: str | None = None, monitor: str | None = None) -> dict[str, Any]:
        """Per ServiceMonitor ("namespace/name"): ``probes[]``, ``summary``, ``alerting``."""
        out: dict[str, Any] = {}
        for key in sorted(self.probes):
            if (namespace and key[0] != namespace) or (monitor and key[1] != monitor):
                continue
            entry = out.setdefault(f"{key[0]}/{key[1]}", {"probes": []})
            entry["probes"].append(self.probe_status(key))
        for entry in out.values():
            probes = entry["probes"]
            entry["summary"] = f"{sum(p['ok'] is True for p in probes)}/{len(probes)} up"
            entry["alerting"] = sum(p["alert"] == "alerting" for p in probes)
        return out

    async def _publish_status(self) -> None:
        """Status changes as ``status`` events, coalesced to one per monitor per statusInterval."""
        while True:
            await asyncio.sleep(parse_duration(self.config.status_interval))
            dirty, self._dirty = self._dirty, set()
            for ns, name in sorted(dirty):
                if (ns, name) in self.monitors:
                    self.bus.publish(
                        "status",
                        namespace=ns,
                        monitor=name,
                        status=self.status(ns, name).get(f"{ns}/{name}", {}),
                    )


def latency(seconds: float) -> str:
    """A Go-style duration string with three significant digits: "0.412ms", "12.3ms", "1.5s"."""
    return f"{seconds * 1000:.3g}ms" if seconds < 1 else f"{seconds:.3g}s"
