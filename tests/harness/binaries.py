"""Finds the Kubernetes-side binaries the test harnesses run.

Per binary, in this order (DESIGN "Binaries for tests"):
1. `$KUBEBUILDER_ASSETS/<binary>` when that variable is set (the envtest convention;
   envtest ships only etcd, kube-apiserver and kubectl),
2. the version-keyed cache `${HASTACK_CACHE:-~/.cache/hastack}/bin/<component>-<version>/`,
3. a build by `tests/harness/build-binaries`, which fills that cache once.

The pinned versions live in one place, the build script; this module reads them from it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import time
from functools import cache
from pathlib import Path

log = logging.getLogger("harness.binaries")

BUILD_SCRIPT = Path(__file__).with_name("build-binaries")

# binary -> (version variable in build-binaries, cache directory prefix, build target)
_CATALOGUE: dict[str, tuple[str, str, str]] = {
    "etcd": ("ETCD_VERSION", "etcd", "control-plane"),
    "kube-apiserver": ("K8S_VERSION", "kubernetes", "control-plane"),
    "kube-controller-manager": ("K8S_VERSION", "kubernetes", "control-plane"),
    "kube-scheduler": ("K8S_VERSION", "kubernetes", "control-plane"),
    "kubectl": ("K8S_VERSION", "kubernetes", "control-plane"),
    "kwok": ("KWOK_VERSION", "kwok", "control-plane"),
    "helm": ("HELM_VERSION", "helm", "control-plane"),
    "kubelet": ("K8S_VERSION", "kubernetes", "lab"),
    "kube-proxy": ("K8S_VERSION", "kubernetes", "lab"),
    "containerd": ("CONTAINERD_VERSION", "containerd", "lab"),
    "containerd-shim-runc-v2": ("CONTAINERD_VERSION", "containerd", "lab"),
    "ctr": ("CONTAINERD_VERSION", "containerd", "lab"),
    "crictl": ("CRICTL_VERSION", "crictl", "lab"),
    "coredns": ("COREDNS_VERSION", "coredns", "lab"),
}

# What envtest's KUBEBUILDER_ASSETS directory carries; anything else comes from the cache.
ENVTEST_BINARIES = ("etcd", "kube-apiserver", "kubectl")


class BinaryNotFound(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("HASTACK_CACHE") or Path.home() / ".cache" / "hastack")


@cache
def versions() -> dict[str, str]:
    """The pins, read from the build script (`K8S_VERSION=v1.37.2` lines)."""
    text = BUILD_SCRIPT.read_text()
    return dict(re.findall(r"^([A-Z0-9_]+_VERSION)=(\S+)$", text, flags=re.MULTILINE))


def cached_path(name: str) -> Path:
    """Where `name` lives in the cache (whether or not it is there yet)."""
    try:
        var, prefix, _ = _CATALOGUE[name]
    except KeyError:
        raise BinaryNotFound(f"unknown binary {name!r}; known: {', '.join(sorted(_CATALOGUE))}") from None
    return cache_root() / "bin" / f"{prefix}-{versions()[var]}" / name


def _from_assets(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    path = Path(assets) / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    return None


def build(target: str, timeout: float = 3600.0) -> None:
    """Run build-binaries for `target` under a lock, so parallel runs build once."""
    lock_path = cache_root() / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log.info("building target=%s with %s (this can take ~10 minutes cold)", target, BUILD_SCRIPT)
        t0 = time.monotonic()
        res = subprocess.run(
            ["bash", str(BUILD_SCRIPT), target],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise BinaryNotFound(
                f"{BUILD_SCRIPT.name} {target} failed (exit {res.returncode}); "
                f"run it by hand to see the whole log. Last lines:\n{res.stderr[-3000:]}"
            )
        log.info("built target=%s seconds=%.0f", target, time.monotonic() - t0)


@cache
def find(name: str, allow_build: bool = True) -> Path:
    """The path of binary `name`: KUBEBUILDER_ASSETS, then the cache, then a build."""
    if name in ENVTEST_BINARIES:
        hit = _from_assets(name)
        if hit:
            log.info("KUBEBUILDER_ASSETS hit: %s", hit)
            return hit
    path = cached_path(name)
    if path.is_file() and os.access(path, os.X_OK):
        log.info("cache hit: %s", path)
        return path
    if not allow_build:
        raise BinaryNotFound(
            f"{name} is neither in KUBEBUILDER_ASSETS nor cached at {path}; "
            f"build it with: {BUILD_SCRIPT} {_CATALOGUE[name][2]}"
        )
    build(_CATALOGUE[name][2])
    if not path.is_file():
        raise BinaryNotFound(f"{BUILD_SCRIPT.name} finished but {path} is missing")
    return path


def find_all(names: tuple[str, ...]) -> dict[str, Path]:
    return {n: find(n) for n in names}
