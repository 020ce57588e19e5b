"""The replication connections' TCP congestion control (`net.congestionControl`), read back
from the kernel with `ss`: cubic by default (the host default here paces every packet),
the host's own with "", and a name the kernel does not offer leaves the link working on
the host default with one warning in the log."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, cluster

SIZE = 16 << 20


def host_default() -> str:
    return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()


def link_algorithms(c: Cluster) -> list[str]:
    """The congestion control of every TCP socket on node 0's replication port, both ends."""
    port = c[0].cfg["net"]["listen"].rpartition(":")[2]
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    names = re.findall(r"^\s+(\w+) wscale:", out, flags=re.M)
    assert names, f"no established replication socket in:\n{out}"
    return names


@pytest.mark.parametrize(
    "setting,want",
    [(None, "cubic"), ("reno", "reno"), ("", "host"), ("nosuchcc", "host")],
    ids=["default", "chosen", "host-default", "unknown-name"],
)
def test_replication_link_congestion_control(tmp_path: Path, setting: str | None, want: str) -> None:
    net = {} if setting is None else {"congestionControl": setting}
    expect = host_default() if want == "host" else want
    with cluster(tmp_path, 2, size=SIZE, net=net) as c:
        c.wait_connected(60)
        algos = link_algorithms(c)
        assert algos == [expect] * len(algos), algos
        assert len(algos) == 2  # one connection between the pair, seen from each end
        warned = "net.congestionControl not available" in c.logs()
        assert warned == (setting == "nosuchcc")
