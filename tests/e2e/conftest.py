"""e2e tier: the lab (real kubelets, containerd and kube-proxy in network namespaces)."""

from harness.lab_pytest import (  # noqa: F401
    hastack_image,
    lab,
    lab_namespace,
    operator_release,
    pytest_terminal_summary,
)
