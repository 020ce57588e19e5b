"""Network namespaces joined by veth pairs, one per replica, for real link cuts (torn down always).

``netns_mesh(n)`` gives every pair of namespaces its own veth link and /30-style addresses
so that one link can be cut (``ip link set ... down``) while the others stay up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Mesh:
    names: list[str]
    links: dict[tuple[int, int], tuple[str, str]] = field(
        default_factory=dict
    )  # (i, j) -> (dev in i, dev in j)
    addrs: dict[tuple[int, int], str] = field(default_factory=dict)  # (i, j) -> address of j as seen from i

    def address(self, of: int, seen_from: int) -> str:
        return self.addrs[(seen_from, of)]

    def set_link(self, i: int, j: int, up: bool) -> None:
        a, b = (i, j) if i < j else (j, i)
        dev_a, dev_b = self.links[(a, b)]
        state = "up" if up else "down"
        sh("ip", "-n", self.names[a], "link", "set", dev_a, state)
        sh("ip", "-n", self.names[b], "link", "set", dev_b, state)


@contextlib.contextmanager
def netns_mesh(n: int) -> Iterator[Mesh]:
    tag = f"{os.getpid() % 100000}"
    mesh = Mesh([f"br{tag}n{i}" for i in range(n)])
    try:
        for name in mesh.names:
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        for k, (i, j) in enumerate(itertools.combinations(range(n), 2)):
            da, db = f"b{tag}v{i}{j}", f"b{tag}v{j}{i}"
            sh("ip", "link", "add", da, "netns", mesh.names[i], "type", "veth", "peer", "name", db, "netns",
               mesh.names[j])  # fmt: skip
            subnet = f"10.213.{(int(tag) + k) % 250}"
            for dev, ns, host in ((da, mesh.names[i], 1), (db, mesh.names[j], 2)):
                sh("ip", "-n", ns, "addr", "add", f"{subnet}.{host}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
            mesh.links[(i, j)] = (da, db)
            mesh.addrs[(i, j)] = f"{subnet}.2"
            mesh.addrs[(j, i)] = f"{subnet}.1"
        yield mesh
    finally:
        for name in mesh.names:
            subprocess.run(["ip", "netns", "pids", name], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
