"""pytest glue for the control plane: the session fixture and a start-up time line in the summary.

Import both names into a conftest.py:

    from harness.controlplane_pytest import control_plane, pytest_terminal_summary  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.controlplane import ControlPlane

_started: list[ControlPlane] = []


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + controller-manager + scheduler + 2 kwok nodes, shared by the session.

    Yields a ControlPlane: `.kubeconfig` (admin), `.server`, `.kubectl(...)`, `.api_client()`,
    `.kubeconfig_for_service_account(ns, name)`, `.set_node_ready(node, bool)`, `.node_names`.
    """
    cp = ControlPlane(nodes=2)
    request.addfinalizer(cp.stop)  # registered first: a half-started plane is stopped too
    cp.start()
    _started.append(cp)
    yield cp


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for cp in _started:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in cp.timings.items())
        terminalreporter.write_line(f"control plane start-up: {cp.timings.get('total', 0):.1f}s ({phases})")
