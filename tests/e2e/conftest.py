"""e2e tier: the lab (real kubelets, containerd and kube-proxy in network namespaces)."""

from harness.lab_pytest import hastack_image, lab, lab_namespace, pytest_terminal_summary  # noqa: F401
