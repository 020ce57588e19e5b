"""Integration tier: a real control plane (etcd, kube-apiserver, controllers, kwok nodes)."""

from harness.controlplane_pytest import control_plane, pytest_terminal_summary  # noqa: F401
