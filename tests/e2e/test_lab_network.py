"""Pods on two lab nodes reach each other by IP and by headless-Service DNS name, over TCP
and UDP (the path heartbeats take), through the CNI bridge, the routes and CoreDNS."""

from __future__ import annotations

from harness.lab_pytest import Cluster, start_tcp_peers, wait_pods_ready, wait_resolves
from harness.lab_workloads import (
    RESOLVE_PY,
    TCP_PORT,
    UDP_ASK,
    UDP_ECHO,
    UDP_PORT,
    headless_service,
    spread_statefulset,
)


def test_pods_on_two_nodes_talk_tcp_by_ip_and_by_dns_name(cluster: Cluster, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = start_tcp_peers(cluster, ns)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2, "one pod per node"
    for a in pods:
        for b in pods:
            if a is b:
                continue
            src, dst = a["metadata"]["name"], b["metadata"]["name"]
            by_ip = cluster.kubectl(
                "exec", "-n", ns, src, "--", "nc", "-w", "3", b["status"]["podIP"], str(TCP_PORT)
            ).stdout.strip()
            assert by_ip == f"tcp-{dst}"
            fqdn = f"{dst}.peers.{ns}.svc.cluster.local"
            wait_resolves(cluster, ns, src, fqdn, ["nslookup"])
            looked_up = cluster.kubectl("exec", "-n", ns, src, "--", "nslookup", fqdn).stdout
            assert b["status"]["podIP"] in looked_up
            by_name = cluster.kubectl(
                "exec", "-n", ns, src, "--", "nc", "-w", "3", f"{dst}.peers", str(TCP_PORT)
            ).stdout.strip()
            assert by_name == f"tcp-{dst}"


def test_pods_on_two_nodes_talk_udp_by_dns_name(cluster: Cluster, lab_namespace: str, hastack_image: str) -> None:
    ns = lab_namespace
    cluster.apply(
        [
            headless_service("members", "member"),
            spread_statefulset("member", "members", hastack_image, ["/usr/bin/python3", "-c", UDP_ECHO]),
        ],
        ns,
    )
    pods = wait_pods_ready(cluster, ns, "app=member", 2)
    names = [p["metadata"]["name"] for p in pods]
    for src in names:
        for dst in names:
            if src != dst:
                wait_resolves(cluster, ns, src, f"{dst}.members", RESOLVE_PY)
                out = cluster.kubectl(
                    "exec",
                    "-n",
                    ns,
                    src,
                    "--",
                    "/usr/bin/python3",
                    "-c",
                    UDP_ASK,
                    f"{dst}.members",
                    str(UDP_PORT),
                    timeout=60,
                ).stdout.strip()
                assert out == f"udp-{dst}:ping"
