"""Real heartbeat processes, one network namespace per member, on a bridge of the host.

    host  hbN-br 10.231.N.1/24 ── netns <pod> veth 10.231.N.(10+i)

A network namespace is named after its member pod (``hb<N>-web-0``), so a test reads like the
cluster it models. Partitions are nftables rules inside a member's namespace (one table,
``hastack_hb``), the whole link with ``ip link set down``. ``close()`` stops every process and
removes every namespace, veth and the bridge, even after a failed test.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.procs import Child, Supervisor, run, wait_for
from hastack_common import ctlsock

_IDS = itertools.count()
VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"
METRICS_PORT = 9694


def _ns_exec(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *argv], check=check)


@dataclass
class Member:
    name: str
    netns: str
    ip: str
    veth: str
    run_dir: Path
    config: Path
    secret: Path
    child: Child | None = None

    def status(self, timeout: float = 3.0) -> Any:
        return ctlsock.call_sync(str(self.run_dir / "heartbeat.sock"), "status", timeout=timeout)

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return ctlsock.call_sync(str(self.run_dir / "heartbeat.sock"), cmd, args, timeout=5.0)

    def peer_state(self, peer: str) -> str:
        return str(self.status()["peers"][peer]["state"])

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics as {'name{labels}': value} (fetched through the bridge)."""
        with urllib.request.urlopen(f"http://{self.ip}:{METRICS_PORT}/metrics", timeout=3) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def state_file(self) -> Any:
        return json.loads((self.run_dir / "state.json").read_text())


@dataclass
class HeartbeatNet:
    """N members named ``<prefix>-<i>``; nothing runs until ``start(name)``."""

    tmp: Path
    n: int = 2
    prefix: str = "web"
    timing: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    net_id: int = 0
    namespace: str = "default"
    kubeconfig: Path | None = None  # with it: Lease arbitration against that API server
    per_member: Callable[[int, str], dict[str, Any]] | None = None  # extra config of member i

    def __post_init__(self) -> None:
        self.net_id = 1 + (os.getpid() + 17 * next(_IDS)) % 250  # names and subnets unique per net
        self.bridge = f"hb{self.net_id}-br"
        self.host_ip = f"10.231.{self.net_id}.1"
        self.sup = Supervisor(self.tmp / "logs")
        self.cluster_secret = secrets.token_bytes(32)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self.close_network()
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        names = [f"{self.prefix}-{i}" for i in range(self.n)]
        addrs = {name: f"10.231.{self.net_id}.{10 + i}" for i, name in enumerate(names)}
        for i, name in enumerate(names):
            ns, veth = f"hb{self.net_id}-{name}", f"hb{self.net_id}v{i}"
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            _ns_exec(ns, "ip", "addr", "add", f"{addrs[name]}/24", "dev", "eth0")
            _ns_exec(ns, "ip", "link", "set", "eth0", "up")
            _ns_exec(ns, "ip", "link", "set", "lo", "up")
            _ns_exec(ns, "ip", "route", "add", "default", "via", self.host_ip)  # the API server's address
            run_dir = self.tmp / name / "run"
            run_dir.mkdir(parents=True)
            secret = self.tmp / name / "secret"
            secret.write_bytes(self.cluster_secret)
            cfg = {"cluster": self.prefix, "namespace": self.namespace, "members": names,
                   "peerDomain": "invalid", "leaseName": self.prefix, "addresses": addrs,
                   "timing": self.timing, "secretFile": str(secret), "runDir": str(run_dir),
                   "metricsPort": METRICS_PORT, **self.extra,
                   **(self.per_member(i, name) if self.per_member else {})}
            path = self.tmp / name / "heartbeat.yaml"
            path.write_text(yaml.safe_dump(cfg))
            self.members[name] = Member(name, ns, addrs[name], veth, run_dir, path, secret)

    def start(self, name: str, *extra_args: str, env: dict[str, str] | None = None) -> Member:
        mem = self.members[name]
        # nsenter --net: the member's network namespace but the host's mount namespace, as a pod's
        # Bidirectional hostPath mount is (ip netns exec would hide its mounts in a private one).
        argv = ["nsenter", f"--net=/var/run/netns/{mem.netns}", str(VENV / "hastack"), "heartbeat",
                "--config", str(mem.config), "--member", name, *extra_args]
        if self.kubeconfig is not None and "--no-lease" not in extra_args:
            argv += ["--kubeconfig", str(self.kubeconfig)]
        mem.child = self.sup.start(f"{name}-{len(self.sup.children)}", argv,
                                   env={"HASTACK_LOG_LEVEL": "DEBUG", **(env or {})})
        wait_for(lambda: _sock_ready(mem), 30, f"{name}'s control socket")
        return mem

    def kill(self, name: str) -> None:
        mem = self.members[name]
        if mem.child is not None and mem.child.running():
            mem.child.proc.kill()
            mem.child.proc.wait(10)

    # ---- faults -------------------------------------------------------------------------

    def link(self, name: str, up: bool) -> None:
        _ns_exec(self.members[name].netns, "ip", "link", "set", "eth0", "up" if up else "down")

    def drop(self, name: str, rules: list[str]) -> None:
        """Replace ``name``'s nftables drops (input and output) with ``rules`` (nft match text)."""
        ns = self.members[name].netns
        _ns_exec(ns, "nft", "delete", "table", "inet", "hastack_hb", check=False)
        if not rules:
            return
        lines = ["table inet hastack_hb {",
                 "  chain out { type filter hook output priority 0; policy accept;"]
        lines += [f"    {r} drop" for r in rules]
        lines += ["  }", "  chain inp { type filter hook input priority 0; policy accept;"]
        lines += [f"    {r.replace(' daddr ', ' saddr ').replace(' dport ', ' sport ')} drop" for r in rules]
        lines += ["  }", "}"]
        run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input="\n".join(lines) + "\n")

    def isolate_from_peers(self, name: str) -> None:
        others = [m.ip for m in self.members.values() if m.name != name]
        self.drop(name, [f"ip daddr {ip}" for ip in others])

    # ---- teardown -----------------------------------------------------------------------

    def close_network(self) -> None:
        for i in range(self.n):  # the veth first: a namespace is destroyed asynchronously
            subprocess.run(["ip", "link", "del", f"hb{self.net_id}v{i}"], capture_output=True, check=False)
            ns = f"hb{self.net_id}-{self.prefix}-{i}"
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def close(self) -> None:
        self.sup.stop_all(grace=1.0)
        self.close_network()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.tail(40)}" for c in self.sup.children)


def _sock_ready(mem: Member) -> bool:
    if mem.child is not None and not mem.child.running():
        raise AssertionError(f"{mem.name} exited:\n{mem.child.tail()}")
    try:
        mem.status(timeout=1.0)
        return True
    except ctlsock.ControlError:
        return False
