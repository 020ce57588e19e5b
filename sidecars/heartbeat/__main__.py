"""`hastack heartbeat --config FILE`: the heartbeat sidecar of one HACluster member.

The member's own name and namespace come from ``HASTACK_POD_NAME`` and ``HASTACK_NAMESPACE``
(the downward API) or ``--member``/``--namespace``. SIGTERM is a graceful termination: an active
member hands over (switchover to an alive, eligible peer), releases the Lease, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from hastack_common import logs
from hastack_common.config_heartbeat import load
from hastack_common.durations import parse_duration
from hastack_common.logs import kv
from hastack_heartbeat import membership as m
from hastack_heartbeat import reload
from hastack_heartbeat.agents import Agent, ResourceGroup
from hastack_heartbeat.arbitration import Timings
from hastack_heartbeat.events import RoleChanged, Switchover
from hastack_heartbeat.lease import KubeLease, NoLease
from hastack_heartbeat.node import LeaseBackend, Node

log = logging.getLogger("hastack_heartbeat")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hastack heartbeat", description=__doc__)
    p.add_argument("--config", default="/etc/hastack/heartbeat/heartbeat.yaml")
    p.add_argument("--member", default=os.environ.get("HASTACK_POD_NAME"))
    p.add_argument("--kubeconfig", default=None, help="default: in-cluster service account, else KUBECONFIG")
    p.add_argument("--no-lease", action="store_true",
                   help="membership only: no Lease, so no member ever becomes active")
    p.add_argument("--no-pod-labels", action="store_true", help="do not label pods (members outside pods)")
    p.add_argument("--metrics-port", type=int, default=None)
    p.add_argument("--test-disable-fencing", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--test-ignore-outdated", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


async def run(ns: argparse.Namespace) -> int:
    cfg = load(await asyncio.to_thread(Path(ns.config).read_text))
    if not ns.member:
        raise SystemExit("hastack heartbeat: set HASTACK_POD_NAME (downward API) or --member")
    secret = (await asyncio.to_thread(Path(cfg.secret_file).read_bytes)).rstrip(b"\n")
    timings = Timings.from_config(cfg.timing)
    if ns.test_disable_fencing:
        log.warning("FENCING DISABLED (test-only flag): two members may be active at once")
        timings = Timings(**{**timings.__dict__, "fencing": False})
    api: Any = None
    lease: LeaseBackend = NoLease()
    agents: list[Agent] = []
    if not ns.no_lease:
        from hastack_heartbeat import k8s

        api = await asyncio.to_thread(k8s.api_client, ns.kubeconfig)
        lease = KubeLease(api, cfg.namespace, cfg.lease_name, timeout=timings.renew_period,
                          default_duration=timings.lease_duration)
        if not ns.no_pod_labels:
            agents.append(k8s.PodLabelAgent(api, cfg.namespace, ns.member, cfg.members))
    replica = None
    if cfg.volume is not None:
        from hastack_heartbeat import volume

        replica = volume.ReplicaAgent(cfg.volume.blockrepl_socket)
        exposed = volume.ExposeAgent(cfg.volume.nbd_uri, cfg.volume.expose_dir)
        fs = volume.FilesystemAgent(exposed, cfg.volume.mount_dir, cfg.volume.fs_type, cfg.volume.fsck,
                                    gate_dir=cfg.run_dir, gate_wait=parse_duration(cfg.volume.wait_for_gate))
        agents[:0] = [replica, exposed, fs]  # volume first, the pod label last
    loop = asyncio.get_running_loop()
    group = ResourceGroup(agents, time.monotonic)
    if ns.test_ignore_outdated:
        log.warning("OUTDATED RECORDS IGNORED (test-only flag): a stale replica may be promoted")
    node = Node(cfg, ns.member, secret, lease, group, timings=timings, replica=replica,
                ignore_outdated=ns.test_ignore_outdated)
    if replica is not None:
        replica.remaining = lambda: (node.state.fence_until or 0.0) - node.clock()
    with contextlib.suppress(Exception):  # a crashed predecessor may have left resources behind
        await group.demote("start-up cleanup", _nothing)
    start_http_server(ns.metrics_port or cfg.metrics_port, registry=node.metrics.registry)
    if api is not None:
        from hastack_heartbeat import k8s

        publisher = k8s.StatusPublisher(api, cfg.namespace, ns.member, node.status,
                                        on_result=lambda r: node.metrics.status_publishes.labels(r).inc())
        recorder = k8s.EventRecorder(api, cfg.namespace, cfg.cluster)
        node.role_listeners.append(lambda a, now: _on_role(node, recorder, a, now))
        node.emit = lambda kind, reason, message: node.spawn(recorder.emit(node.clock(), kind, reason, message))
        node.spawn(publisher.run())
        node.spawn(k8s.SwitchoverWatcher(api, cfg.namespace, cfg.cluster, recorder,
                                         period=timings.renew_period).run(node))
    node.spawn(reload.watch(Path(ns.config), load, node.reconfigure, lambda error: _rejected(node, error)))
    loop.add_signal_handler(signal.SIGTERM, lambda: node.spawn(_terminate(node)))
    loop.add_signal_handler(signal.SIGINT, lambda: node.spawn(_terminate(node)))
    await node.run()
    return 0


def _rejected(node: Node, error: str) -> None:
    node.emit("Warning", "ConfigRejected", f"{node.me}: heartbeat.yaml change refused, running on the previous "
              f"configuration: {error}")


async def _nothing() -> None:
    return None


def _on_role(node: Node, recorder: Any, a: RoleChanged, now: float) -> None:
    if a.new == "active":
        node.spawn(recorder.emit(now, "Normal", "MemberActive", f"{node.me} is active: {a.reason}"))
    elif a.new == "demoting":
        node.spawn(recorder.emit(now, "Warning", "MemberDemoting", f"{node.me} demotes: {a.reason}"))


async def _terminate(node: Node, grace: float = 20.0) -> None:
    """Graceful termination: hand over when active, release the Lease, then stop."""
    log.info("terminating", extra=kv(role=node.state.role.value))
    if node.state.role in m.HOLDING:
        node.feed(Switchover(None, "pod terminating"))
    deadline = node.clock() + grace
    while node.clock() < deadline:
        st = node.state
        if st.role is m.Role.STANDBY and st.pending_release is None and not st.lease_inflight:
            break
        await asyncio.sleep(0.05)
    node.stop()


def main(argv: list[str]) -> int:
    logs.setup()
    return asyncio.run(run(parse(argv)))
