"""e2e tier: the lab (real kubelets, containerd and kube-proxy in network namespaces), or a kind
cluster with `--cluster=kind` where Docker and kind exist (docs/testing.md)."""

import pytest

from harness.lab_pytest import (  # noqa: F401
    add_cluster_option,
    cluster,
    hastack_image,
    lab,
    lab_namespace,
    operator_release,
    pytest_terminal_summary,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_cluster_option(parser)
