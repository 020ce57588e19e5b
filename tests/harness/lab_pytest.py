"""pytest glue for the lab (e2e tier). Import the names into tests/e2e/conftest.py.

- `cluster` (session): where the e2e tests run: the lab (default), or a kind cluster with
  `--cluster=kind` / HASTACK_E2E_CLUSTER=kind (harness/lab_kind.py; skipped with the reason
  where Docker or kind are missing).
- `lab` (session): a 2-node lab. A lab already up (`hastack lab up`) is reused and left
  running; otherwise the fixture brings one up and, at the end, takes it down and fails
  the run if anything of it is left on the machine. Tests that ask for `lab` itself (node
  faults, host-side checks) skip on kind, saying so.
- `hastack_image` (session): the hastack image built locally and imported into every node.
- `operator_release` (session): charts/hastack installed with that image; yields its namespace.
- `lab_namespace`: a fresh namespace per test, deleted afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from harness import image
from harness.lab import Lab, LabConfig
from harness.lab_images import BUSYBOX_IMAGE, system_images
from harness.lab_kind import KindCluster
from harness.lab_workloads import TCP_SERVER, headless_service, spread_statefulset
from harness.procs import wait_for

Cluster: TypeAlias = Lab | KindCluster
LAB_ONLY = ("needs the lab's own nodes (network namespaces on this host: node faults, host-side checks "
            "of mounts and loop devices, local Block PVs on loop devices); kind nodes are containers")


def cluster_kind(config: pytest.Config) -> str:
    """`--cluster` where tests/e2e/conftest.py registered it, else HASTACK_E2E_CLUSTER, else the lab."""
    try:
        return str(config.getoption("--cluster"))
    except ValueError:
        return os.environ.get("HASTACK_E2E_CLUSTER", "lab")


def add_cluster_option(parser: pytest.Parser) -> None:
    parser.addoption("--cluster", choices=("lab", "kind"), default=os.environ.get("HASTACK_E2E_CLUSTER", "lab"),
                     help="where the e2e tier runs: the lab (default) or a kind cluster (needs Docker and kind)")


LOCK = Path("/run/hastack-lab.lock")
_report: list[str] = []


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if cluster_kind(request.config) != "kind":
        yield request.getfixturevalue("lab")
        return
    from harness import lab_kind

    problems = lab_kind.missing()
    if problems:
        pytest.skip("--cluster=kind: " + "; ".join(problems))
    kind = lab_kind.KindCluster()
    request.addfinalizer(kind.down)
    kind.up()
    for img in system_images():  # busybox and friends, as the lab's nodes have them
        kind.import_image(img.archive)
    _report.append(f"kind cluster {lab_kind.CLUSTER_NAME}: nodes {[n.name for n in kind.nodes]}")
    yield kind


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if cluster_kind(request.config) == "kind":
        pytest.skip("lab only: this test " + LAB_ONLY)
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(lock, fcntl.LOCK_EX)
    request.addfinalizer(lock.close)
    existing = Lab(LabConfig(nodes=int(Lab().state().get("nodes", 2))))
    if existing.api_healthy() and existing.config.nodes >= 2:
        existing.up()  # idempotent: completes anything missing
        _report.append("lab: reused a running lab (left up)")
        yield existing
        return
    lab = Lab(LabConfig(nodes=2))

    def teardown() -> None:
        lab.down()
        left = lab.leftovers()
        _report.append(f"lab: down, leftovers={left}")
        assert not left, f"the lab left things behind: {left}"

    request.addfinalizer(teardown)
    timings = lab.up()
    _report.append("lab up: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    yield lab


@pytest.fixture(scope="session")
def hastack_image(cluster: Cluster) -> str:
    img = image.build()
    cluster.import_image(img.archive)
    _report.append(f"hastack image {img.tag} ready in {img.seconds:.1f}s")
    return img.tag


@pytest.fixture(scope="session")
def operator_release(cluster: Cluster, hastack_image: str) -> Iterator[str]:
    """The chart installed once per session (helm, the local image); uninstalled at the end."""
    from harness import lab_hastack

    lab_hastack.install_operator(cluster, hastack_image)
    yield lab_hastack.RELEASE_NS
    lab_hastack.uninstall_operator(cluster)


@pytest.fixture
def lab_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        30,
        f"ServiceAccount default in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s", check=False, timeout=120)
    if isinstance(cluster, Lab):
        cluster.recycle_released_pvs()


def pods(lab: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = lab.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def wait_pods_ready(lab: Cluster, namespace: str, selector: str, count: int, timeout: float = 120) -> list[Any]:
    def ready() -> list[Any] | None:
        items = pods(lab, namespace, selector)
        ok = [
            p
            for p in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        return items if len(ok) == count == len(items) else None

    return wait_for(ready, timeout, f"{count} ready pods {selector} in {namespace}")


def wait_resolves(lab: Cluster, namespace: str, pod: str, name: str, resolve: list[str], timeout: float = 60) -> None:
    """Wait until ``name`` resolves inside ``pod`` (``resolve`` + name exits 0). A StatefulSet
    pod's record under its headless Service appears once the EndpointSlice lists the pod Ready
    and CoreDNS has seen that: a moment after the pod is Ready, longer on a loaded machine.
    Before then the lookup falls through the search list to an upstream the lab does not
    have, and fails with "Temporary failure in name resolution"."""

    def resolves() -> bool | None:
        res = lab.kubectl("exec", "-n", namespace, pod, "--", *resolve, name, check=False, timeout=30)
        return res.returncode == 0 or None

    wait_for(resolves, timeout, f"{name} to resolve in {pod}")


def start_tcp_peers(lab: Cluster, namespace: str) -> list[dict[str, Any]]:
    """Two busybox pods, one per node, each answering "tcp-<name>" on TCP_PORT; headless Service
    `peers`. Returns the ready pods."""
    lab.apply(
        [
            headless_service("peers", "peer"),
            spread_statefulset("peer", "peers", BUSYBOX_IMAGE, ["/bin/sh", "-c", TCP_SERVER]),
        ],
        namespace,
    )
    return wait_pods_ready(lab, namespace, "app=peer", 2)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _report:
        terminalreporter.write_line(line)
