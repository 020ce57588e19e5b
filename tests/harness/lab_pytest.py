"""pytest glue for the lab (e2e tier). Import the names into tests/e2e/conftest.py.

- `lab` (session): a 2-node lab. A lab already up (`hastack lab up`) is reused and left
  running; otherwise the fixture brings one up and, at the end, takes it down and fails
  the run if anything of it is left on the machine.
- `hastack_image` (session): the hastack image built locally and imported into every node.
- `operator_release` (session): charts/hastack installed with that image; yields its namespace.
- `lab_namespace`: a fresh namespace per test, deleted afterwards.
"""

from __future__ import annotations

import fcntl
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import image
from harness.lab import Lab, LabConfig
from harness.lab_images import BUSYBOX_IMAGE
from harness.lab_workloads import TCP_SERVER, headless_service, spread_statefulset
from harness.procs import wait_for

LOCK = Path("/run/hastack-lab.lock")
_report: list[str] = []


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
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
def hastack_image(lab: Lab) -> str:
    img = image.build()
    lab.import_image(img.archive)
    _report.append(f"hastack image {img.tag} ready in {img.seconds:.1f}s")
    return img.tag


@pytest.fixture(scope="session")
def operator_release(lab: Lab, hastack_image: str) -> Iterator[str]:
    """The chart installed once per session (helm, the local image); uninstalled at the end."""
    from harness import lab_hastack

    lab_hastack.install_operator(lab, hastack_image)
    yield lab_hastack.RELEASE_NS
    lab_hastack.uninstall_operator(lab)


@pytest.fixture
def lab_namespace(lab: Lab) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    lab.kubectl("create", "namespace", name)
    wait_for(
        lambda: lab.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        30,
        f"ServiceAccount default in {name}",
    )
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s", check=False, timeout=120)
    lab.recycle_released_pvs()


def pods(lab: Lab, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = lab.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def wait_pods_ready(lab: Lab, namespace: str, selector: str, count: int, timeout: float = 120) -> list[Any]:
    def ready() -> list[Any] | None:
        items = pods(lab, namespace, selector)
        ok = [
            p
            for p in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        return items if len(ok) == count == len(items) else None

    return wait_for(ready, timeout, f"{count} ready pods {selector} in {namespace}")


def start_tcp_peers(lab: Lab, namespace: str) -> list[dict[str, Any]]:
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
