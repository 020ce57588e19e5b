"""`hastack operator`: run the kopf operator (with Lease leader election by default)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import uuid

import kopf
import kubernetes
from prometheus_client import start_http_server

import hastack_operator.handlers  # noqa: F401  (registers the handlers with kopf)
from hastack_common import logs
from hastack_common.logs import kv
from hastack_operator.leader import LeaderElector, LeaderSettings

log = logging.getLogger("hastack_operator")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hastack operator", description=__doc__)
    p.add_argument("--namespace", action="append", default=[],
                   help="watch only this namespace (repeatable); default: all namespaces")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                   help="hold a Lease so that only one replica acts (default: on)")
    p.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "hastack-system"))
    p.add_argument("--lease-name", default="hastack-operator")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--renew-period", type=float, default=2.0)
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("HASTACK_METRICS_PORT", "8081")))
    p.add_argument("--health-port", type=int, default=int(os.environ.get("HASTACK_HEALTH_PORT", "8080")))
    return p.parse_args(argv)


def load_kube_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


async def run(ns: argparse.Namespace) -> None:
    stop = asyncio.Event()
    elector = None
    if ns.leader_elect:
        load_kube_config()
        identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        elector = LeaderElector(kubernetes.client.CoordinationV1Api(),
                                LeaderSettings(namespace=ns.lease_namespace, name=ns.lease_name,
                                               identity=identity, lease_duration=ns.lease_duration,
                                               renew_deadline=ns.renew_deadline,
                                               renew_period=ns.renew_period))
        log.info("waiting for leadership", extra=kv(lease=f"{ns.lease_namespace}/{ns.lease_name}"))
        await elector.acquire()
    operator = asyncio.create_task(kopf.operator(
        standalone=True,
        clusterwide=not ns.namespace,
        namespaces=ns.namespace,
        liveness_endpoint=f"http://0.0.0.0:{ns.health_port}/healthz",
        stop_flag=stop,
    ))
    if elector is None:
        await operator
        return
    holder = asyncio.create_task(elector.hold())
    done, _ = await asyncio.wait({operator, holder}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    try:
        await asyncio.wait_for(operator, 10)
    except TimeoutError:
        log.warning("kopf did not stop within 10 s")
    finally:
        holder.cancel()
        await asyncio.to_thread(elector.release)
    if holder in done:
        holder.result()  # raises LostLeadership: exit non-zero, the pod restarts as a standby


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    if not ns.renew_period < ns.renew_deadline < ns.lease_duration:
        print("hastack operator: need --renew-period < --renew-deadline < --lease-duration", file=sys.stderr)
        return 2
    logs.setup()
    start_http_server(ns.metrics_port)
    try:
        asyncio.run(run(ns))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.exception("operator stopped", extra=kv(error=exc))
        return 1
    return 0
