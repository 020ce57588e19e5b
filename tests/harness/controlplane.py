"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and (optionally) kwok's fake nodes, all on free loopback ports.

    with ControlPlane(nodes=2) as cp:
        cp.kubectl("get", "nodes")
        v1 = kubernetes.client.CoreV1Api(cp.api_client())

Everything lives in one temporary directory (certificates, kubeconfigs, etcd data, logs)
that `stop()` removes; every process runs in its own process group with PDEATHSIG, so
nothing outlives a failed test or a killed pytest. Set HASTACK_KEEP_LOGS=1 to keep the
directory (its path is logged) for a post-mortem.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import binaries, kubeconfig, kwok, pki
from harness.kubeconfig import http_get
from harness.procs import Child, Supervisor, free_port, pid_alive, run, wait_for

log = logging.getLogger("harness.controlplane")

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
WORKDIR_PREFIX = "hastack-cp-"
START_TIMEOUT = 90.0  # generous: two noisy cores, other builds running


class ControlPlaneError(RuntimeError):
    pass


def sweep_stale_workdirs(root: Path | None = None) -> list[Path]:
    """Remove work directories left by control planes whose owning process is gone (a killed run)."""
    removed = []
    for d in Path(root or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        if (d / "kept").exists():
            continue  # HASTACK_KEEP_LOGS: left for a post-mortem on purpose
        try:
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = 0
            if time.time() - d.stat().st_mtime < 60:
                continue  # being created right now by another run
        if owner and pid_alive(owner):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class ControlPlane:
    """One control plane. `start()` returns when every component is ready; `stop()` is idempotent."""

    def __init__(
        self,
        nodes: int = 2,
        controllers: bool = True,
        bind_address: str = "127.0.0.1",
        extra_sans: tuple[str, ...] = (),
        workdir: Path | None = None,
        detached: bool = False,
        wait_default_sa: bool = True,
    ) -> None:
        self.node_count = nodes
        self.with_controllers = controllers
        self.bind_address = bind_address
        self.extra_sans = extra_sans
        self._given_workdir = workdir
        self.detached = detached
        self.wait_default_sa = wait_default_sa
        self.workdir = Path()
        self.timings: dict[str, float] = {}
        self.ports: dict[str, int] = {}
        self.node_names: list[str] = []
        self._sup: Supervisor | None = None
        self._children: dict[str, Child] = {}

    # -- paths and clients -------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{self.bind_address}:{self.ports['apiserver']}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
        kubeconfig_path: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (admin unless another kubeconfig is given)."""
        argv = [binaries.find("kubectl"), f"--kubeconfig={kubeconfig_path or self.kubeconfig}", *args]
        return run(argv, timeout=timeout, check=check, input=input)

    def api_client(self, kubeconfig_path: Path | None = None) -> Any:
        """A fresh `kubernetes.client.ApiClient` (admin unless another kubeconfig is given)."""
        from kubernetes import config as kconfig

        return kconfig.new_client_from_config(config_file=str(kubeconfig_path or self.kubeconfig))

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, expiration_seconds: int = 3600, path: Path | None = None
    ) -> Path:
        """Mint a token for ServiceAccount namespace/name (TokenRequest API) and write a kubeconfig
        that authenticates with it: code run with it gets exactly that account's RBAC."""
        from kubernetes import client

        with self.api_client() as api:
            req = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            resp = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, req)
        if not resp.status or not resp.status.token:
            raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
        out = path or self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return kubeconfig.write(
            out,
            self.server,
            self.ca_file,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=resp.status.token,
            namespace=namespace,
        )

    def pids(self) -> list[int]:
        return self._sup.pids() if self._sup else []

    def log_tail(self, component: str, lines: int = 40) -> str:
        child = self._children.get(component)
        return child.tail(lines) if child else ""

    # -- kwok node faults ----------------------------------------------------------------

    def set_node_ready(self, name: str, ready: bool, timeout: float = 30.0) -> None:
        """Make a kwok node NotReady (as a node whose kubelet stopped posting status) or heal it."""
        kwok.set_node_ready(self, name, ready, timeout)

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        sweep_stale_workdirs()
        bins = binaries.find_all(("etcd", "kube-apiserver"))
        if self.with_controllers:
            bins.update(binaries.find_all(("kube-controller-manager", "kube-scheduler")))
        if self.node_count:
            bins["kwok"] = binaries.find("kwok")
        self.timings["find_binaries"] = time.monotonic() - t0
        if self._given_workdir:
            self.workdir = self._given_workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self._sup = Supervisor(self.workdir / "logs", detached=self.detached)
        try:
            self._start(bins, t0)
        except BaseException:
            log.error("control plane start failed (HASTACK_KEEP_LOGS=1 keeps %s)", self.workdir)
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        log.info("control plane ready server=%s seconds=%.1f", self.server, self.timings["total"])
        return self

    def _start(self, bins: dict[str, Path], t0: float) -> None:
        creds = self._pki()
        self._start_etcd(bins["etcd"])
        self._start_apiserver(bins["kube-apiserver"], creds)
        self.timings["apiserver_ready"] = time.monotonic() - t0
        if self.with_controllers:
            self._start_controllers(bins, creds)
            self.timings["controllers_ready"] = time.monotonic() - t0
        if self.node_count:  # while the ServiceAccount controller gets going
            self.node_names = kwok.start(self, bins["kwok"], self.node_count)
            self.timings["nodes_ready"] = time.monotonic() - t0
        if self.with_controllers and self.wait_default_sa:
            self._await_default_service_account()
            self.timings["default_sa"] = time.monotonic() - t0

    def stop(self, keep_logs: bool = False) -> None:
        if self._sup:
            self._sup.stop_all()
            self._sup = None
        self._children.clear()
        if not self.workdir.parts or not self.workdir.exists():
            return
        if keep_logs or os.environ.get("HASTACK_KEEP_LOGS"):
            log.info("kept control plane directory %s", self.workdir)
            (self.workdir / "kept").touch()
        elif self._given_workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- pieces --------------------------------------------------------------------------

    def _pki(self) -> dict[str, pki.CertPair]:
        d = self.workdir / "pki"
        ca = pki.CertificateAuthority(d)
        ips = ("127.0.0.1", KUBERNETES_SERVICE_IP, self.bind_address, *self.extra_sans)
        dns = (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
        creds = {
            "apiserver": ca.issue("apiserver", "kube-apiserver", dns=dns, ips=tuple(set(ips)), server=True),
            "apiserver-kubelet-client": ca.issue(
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                orgs=("system:masters",),
                client=True,
            ),
            "admin": ca.issue("admin", "hastack-admin", orgs=("system:masters",), client=True),
            "controller-manager": ca.issue(
                "controller-manager",
                "system:kube-controller-manager",
                client=True,
                server=True,
                dns=("localhost",),
                ips=("127.0.0.1",),
            ),
            "scheduler": ca.issue(
                "scheduler",
                "system:kube-scheduler",
                client=True,
                server=True,
                dns=("localhost",),
                ips=("127.0.0.1",),
            ),
            "sa": pki.service_account_keys(d),
            "ca": ca.pair,
        }
        self.ports["apiserver"] = free_port()
        kubeconfig.write(
            self.kubeconfig,
            self.server,
            ca.pair.cert,
            "hastack-admin",
            creds["admin"].cert,
            creds["admin"].key,
        )
        for who in ("controller-manager", "scheduler"):
            kubeconfig.write(
                self.workdir / f"{who}.kubeconfig",
                self.server,
                ca.pair.cert,
                who,
                creds[who].cert,
                creds[who].key,
            )
        return creds

    def _spawn(self, name: str, argv: list[str | os.PathLike[str]]) -> Child:
        assert self._sup is not None
        child = self._sup.start(name, argv)
        self._children[name] = child
        return child

    def _await(self, name: str, probe: Any, what: str) -> None:
        """Wait for `probe()`; fail fast with the log tail if the process exits meanwhile."""
        child = self._children[name]

        def ready() -> bool:
            if not child.running():
                raise ControlPlaneError(
                    f"{name} exited with {child.proc.returncode} before it was ready; "
                    f"log {child.log_path}:\n{child.tail()}"
                )
            return bool(probe())

        try:
            wait_for(ready, START_TIMEOUT, what)
        except AssertionError as exc:
            raise ControlPlaneError(f"{exc}; log {child.log_path}:\n{child.tail()}") from None

    def _start_etcd(self, etcd: Path) -> None:
        client_port, peer_port = free_port(), free_port()
        self.ports.update(etcd=client_port, etcd_peer=peer_port)
        self._spawn(
            "etcd",
            [
                etcd,
                "--name=hastack",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client_port}",
                f"--advertise-client-urls=http://127.0.0.1:{client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=hastack=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            status, body = http_get(f"http://127.0.0.1:{client_port}/health")
            return status == 200 and '"health":"true"' in body

        self._await("etcd", healthy, "etcd /health")

    def _start_apiserver(self, apiserver: Path, creds: dict[str, pki.CertPair]) -> None:
        self._spawn(
            "kube-apiserver",
            [
                apiserver,
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={creds['apiserver'].cert}",
                f"--tls-private-key-file={creds['apiserver'].key}",
                f"--client-ca-file={creds['ca'].cert}",
                f"--kubelet-client-certificate={creds['apiserver-kubelet-client'].cert}",
                f"--kubelet-client-key={creds['apiserver-kubelet-client'].key}",
                f"--kubelet-certificate-authority={creds['ca'].cert}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={creds['sa'].cert}",
                f"--service-account-signing-key-file={creds['sa'].key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                # The `kubernetes` Service cannot point at a loopback address: no reconciler then.
                f"--endpoint-reconciler-type={'none' if self.bind_address.startswith('127.') else 'lease'}",
                "-v=1",
            ],
        )
        ctx = kubeconfig.tls_context(creds["ca"].cert, creds["admin"].cert, creds["admin"].key)

        def ready() -> bool:
            status, _ = http_get(f"{self.server}/readyz", ctx)
            return status == 200

        self._await("kube-apiserver", ready, "kube-apiserver /readyz")

    def _start_controllers(self, bins: dict[str, Path], creds: dict[str, pki.CertPair]) -> None:
        kcm_port, sched_port = free_port(), free_port()
        self.ports.update(controller_manager=kcm_port, scheduler=sched_port)
        kcm_kc = self.workdir / "controller-manager.kubeconfig"
        sched_kc = self.workdir / "scheduler.kubeconfig"
        cm = creds["controller-manager"]
        self._spawn(
            "kube-controller-manager",
            [
                bins["kube-controller-manager"],
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--tls-cert-file={cm.cert}",
                f"--tls-private-key-file={cm.key}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={creds['sa'].key}",
                f"--root-ca-file={creds['ca'].cert}",
                f"--cluster-signing-cert-file={creds['ca'].cert}",
                f"--cluster-signing-key-file={creds['ca'].key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "-v=1",
            ],
        )
        sc = creds["scheduler"]
        self._spawn(
            "kube-scheduler",
            [
                bins["kube-scheduler"],
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--tls-cert-file={sc.cert}",
                f"--tls-private-key-file={sc.key}",
                "--leader-elect=false",
                "-v=1",
            ],
        )
        ctx = kubeconfig.tls_context(creds["ca"].cert)
        for name, port in (("kube-controller-manager", kcm_port), ("kube-scheduler", sched_port)):
            url = f"https://127.0.0.1:{port}/healthz"
            self._await(name, lambda url=url: http_get(url, ctx)[0] == 200, f"{name} /healthz")

    def _await_default_service_account(self) -> None:
        """Pods can only be created once the ServiceAccount controller made `default`."""
        self._await(
            "kube-controller-manager",
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0
            ),
            "the default ServiceAccount",
        )
