"""The lab's network: one bridge on the host, one network namespace per node joined to it
by a veth pair, a pod subnet per node and static routes between them.

    host  hsklab-br 10.213.0.1/24 ── hsklab-n0 ══ eth0 10.213.0.10 (netns hsklab-n0, pods 10.214.0.0/24)
                                 └─ hsklab-n1 ══ eth0 10.213.0.11 (netns hsklab-n1, pods 10.214.1.0/24)

Pod traffic between nodes is routed (no overlay, no NAT): node i reaches 10.214.j.0/24 via
node j's address; the host reaches every pod subnet the same way (the API server lives on
the host at 10.213.0.1). Everything here is idempotent, and `teardown` removes only what
carries the lab's names.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("harness.lab_net")

PREFIX = "hsklab"
BRIDGE = f"{PREFIX}-br"
HOST_IP = "10.213.0.1"
NODE_NET = "10.213.0.0/24"
CLUSTER_CIDR = "10.214.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
MAX_NODES = 3


@dataclass(frozen=True)
class NodeNet:
    index: int

    @property
    def name(self) -> str:
        return f"lab-node-{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}-n{self.index}"

    @property
    def host_veth(self) -> str:
        return f"{PREFIX}-n{self.index}"

    @property
    def ip(self) -> str:
        return f"10.213.0.{10 + self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.214.{self.index}.0/24"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns


def plan(count: int) -> list[NodeNet]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"the lab has 1 to {MAX_NODES} nodes, not {count}")
    return [NodeNet(i) for i in range(count)]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def in_ns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", netns, *argv, check=check)


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", "link", "show", name]
    if netns:
        argv = ["ip", "-n", netns, "link", "show", name]
    return sh(*argv, check=False).returncode == 0


def setup_bridge() -> None:
    if not link_exists(BRIDGE):
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "replace", f"{HOST_IP}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")


def setup_node(node: NodeNet, all_nodes: list[NodeNet]) -> None:
    """Create (or complete) the node's namespace, link, addresses, sysctls and routes."""
    if not node.netns_path.exists():
        sh("ip", "netns", "add", node.netns)
    if not link_exists(node.host_veth):
        sh("ip", "link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
    sh("ip", "link", "set", node.host_veth, "master", BRIDGE, "up")
    ns = node.netns
    sh("ip", "-n", ns, "addr", "replace", f"{node.ip}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "route", "replace", "default", "via", HOST_IP)
    for key in (
        "net.ipv4.ip_forward=1",
        "net.bridge.bridge-nf-call-iptables=1",
        "net.ipv4.conf.all.route_localnet=1",
    ):
        in_ns(ns, "sysctl", "-q", "-w", key, check=False)
    for other in all_nodes:
        if other.index != node.index:
            sh("ip", "-n", ns, "route", "replace", other.pod_cidr, "via", other.ip)
    sh("ip", "route", "replace", node.pod_cidr, "via", node.ip)


def set_link(node: NodeNet, up: bool) -> None:
    """Cut (or heal) the node's only link, as a pulled cable."""
    sh("ip", "link", "set", node.host_veth, "up" if up else "down")


def link_up(node: NodeNet) -> bool:
    out = sh("ip", "-o", "link", "show", node.host_veth, check=False).stdout
    return ",UP" in out or "<UP" in out


def teardown_node(node: NodeNet) -> None:
    sh("ip", "route", "del", node.pod_cidr, check=False)
    if link_exists(node.host_veth):
        sh("ip", "link", "del", node.host_veth, check=False)
    if node.netns_path.exists():
        sh("ip", "netns", "del", node.netns, check=False)


def teardown_bridge() -> None:
    if link_exists(BRIDGE):
        sh("ip", "link", "del", BRIDGE, check=False)


def leftovers() -> list[str]:
    """Lab network objects still present (for the suite's no-leftovers check)."""
    found = []
    links = sh("ip", "-o", "link", "show", check=False).stdout
    found += [f"link {ln.split(':')[1].strip().split('@')[0]}" for ln in links.splitlines() if PREFIX in ln]
    netns = sh("ip", "netns", "list", check=False).stdout
    found += [f"netns {ln.split()[0]}" for ln in netns.splitlines() if ln.startswith(PREFIX)]
    routes = sh("ip", "route", "show", check=False).stdout
    found += [f"route {ln}" for ln in routes.splitlines() if ln.startswith("10.214.")]
    return found
