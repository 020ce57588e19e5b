"""Harness for mon's system tests: certificates and real processes on loopback.

Processes are started through a ``harness.procs.Supervisor`` (own process group, killed with the
test run), so the fixtures stop them all even when a test fails.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.procs import Child, Supervisor, free_port, wait_for

HARNESS = pathlib.Path(__file__).parent
REPO = HARNESS.parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
__all__ = ["free_port", "wait_for"]  # re-exported for mon's tests


# -- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: str
    cert: str
    key: str
    client_cert: str
    client_key: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path)


def make_certs(d: pathlib.Path) -> Certs:
    """A test CA, a server certificate for 127.0.0.1/localhost (20 days), a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("hastack test CA"))
        .issuer_name(_name("hastack test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(name: str, days: int, server: bool) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
        )
        if server:
            import ipaddress

            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = b.sign(ca_key, hashes.SHA256())
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(d / f"{name}.pem"), _write_key(d / f"{name}.key", key)

    cert, key = leaf("server", 20, True)
    client_cert, client_key = leaf("client", 20, False)
    return Certs(str(d / "ca.pem"), cert, key, client_cert, client_key)


# -- processes ---------------------------------------------------------------------------


def pause(child: Child) -> None:
    """Freeze a process group (SIGSTOP): its listeners accept connections and answer nothing."""
    os.killpg(child.pid, signal.SIGSTOP)


def resume(child: Child) -> None:
    os.killpg(child.pid, signal.SIGCONT)


class Targets:
    """The mon_targets process: HTTP, HTTPS, mTLS, TCP echo and hang listeners."""

    def __init__(self, sup: Supervisor, tmp: pathlib.Path, certs: Certs) -> None:
        self.sup, self.tmp, self.certs = sup, tmp, certs
        self.proc: Child | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> Targets:
        argv = [
            PYTHON,
            str(HARNESS / "mon_targets.py"),
            "--cert",
            self.certs.cert,
            "--key",
            self.certs.key,
            "--ca",
            self.certs.ca,
            "--http-port",
            str(self.ports.get("http", 0)),
            "--ports-file",
            str(self.tmp / "targets.ports"),
        ]
        (self.tmp / "targets.ports").unlink(missing_ok=True)
        proc = self.proc = self.sup.start("targets", argv)

        def ports() -> dict[str, int] | None:
            if not proc.running():
                raise AssertionError(f"mon_targets exited: {proc.tail()}")
            path = self.tmp / "targets.ports"
            return json.loads(path.read_text()) if path.exists() else None

        self.ports = wait_for(ports, 20, "mon_targets listening")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def url(self, path: str, kind: str = "http") -> str:
        scheme = "http" if kind == "http" else "https"
        return f"{scheme}://127.0.0.1:{self.ports[kind]}{path}"

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def set_health(self, status: int, body: str = "healthy") -> None:
        self.admin("/admin/health", {"status": status, "body": body})


def http_json(url: str, body: Any = None, timeout: float = 5) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise AssertionError(f"{binary} is not installed: add its Debian package to .ci/debian-packages.txt")
    return path


def dnsmasq(sup: Supervisor, records: list[str]) -> tuple[Child, int]:
    port = free_port()
    argv = [
        need("dnsmasq"),
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--port={port}",
        "--pid-file=",
        "--user=root",
        "--log-facility=-",
        *records,
    ]
    return sup.start("dnsmasq", argv), port


def prometheus(sup: Supervisor, tmp: pathlib.Path, targets: list[str]) -> tuple[Child, str]:
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "mon", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    argv = [
        need("prometheus"),
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tmp / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return sup.start("prometheus", argv), f"http://127.0.0.1:{port}"


def promql(base: str, query: str) -> list[dict[str, Any]]:
    out = http_json(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")
    assert out["status"] == "success", out
    return list(out["data"]["result"])


def alertmanager(sup: Supervisor, tmp: pathlib.Path) -> tuple[Child, str]:
    port = free_port()
    cfg = tmp / "alertmanager.yml"
    cfg.write_text(json.dumps({"route": {"receiver": "null", "group_wait": "1s"}, "receivers": [{"name": "null"}]}))
    argv = [
        need("prometheus-alertmanager"),
        f"--config.file={cfg}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return sup.start("alertmanager", argv), f"http://127.0.0.1:{port}"


class MonProcess:
    """``hastack mon`` as a real process, its control socket and metrics URL."""

    def __init__(
        self,
        sup: Supervisor,
        tmp: pathlib.Path,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.socket = str(tmp / "mon.sock")
        self.port = free_port()
        self.config_path = tmp / "mon.yaml"
        self.write(config)
        argv = [
            PYTHON,
            "-m",
            "hastack_mon",
            "--config",
            str(self.config_path),
            "--socket",
            self.socket,
            "--metrics-address",
            f"127.0.0.1:{self.port}",
            *(args or []),
        ]
        self.proc = sup.start("mon", argv, env={"HASTACK_LOG_LEVEL": "INFO", **(env or {})})
        wait_for(lambda: self.alive_or_fail() and os.path.exists(self.socket), 20, "mon control socket")

    def alive_or_fail(self) -> bool:
        if not self.proc.running():
            raise AssertionError(f"mon exited {self.proc.proc.returncode}:\n{self.proc.tail(60)}")
        return True

    def write(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        os.replace(tmp, self.config_path)  # atomic, as a ConfigMap update

    def call(self, cmd: str, **args: Any) -> Any:
        from hastack_common.ctlsock import call_sync

        return call_sync(self.socket, cmd, args, timeout=5)

    def probe(self, monitor: str, probe: str, namespace: str = "default") -> dict[str, Any]:
        """One entry of the monitor's ``probes[]`` status, by name."""
        status = self.call("status", namespace=namespace, monitor=monitor)
        return next(p for p in status[f"{namespace}/{monitor}"]["probes"] if p["name"] == probe)

    def probe_names(self, monitor: str, namespace: str = "default") -> set[str]:
        status = self.call("status", namespace=namespace, monitor=monitor)
        return {p["name"] for p in status[f"{namespace}/{monitor}"]["probes"]}

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return str(resp.read().decode())

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        self.proc.stop()
        return self.proc.proc.returncode


@contextlib.contextmanager
def control_server(path: str, handlers: dict[str, Any]) -> Iterator[None]:
    """A ``hastack_common.ctlsock.ControlServer`` on ``path``, served from a thread while in scope."""
    import asyncio
    import threading

    from hastack_common.ctlsock import ControlServer

    ready = threading.Event()
    running: dict[str, Any] = {}

    async def serve() -> None:
        server = ControlServer(path, handlers)
        await server.start()
        running.update(loop=asyncio.get_running_loop(), stop=asyncio.Event())
        ready.set()
        await running["stop"].wait()
        await server.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    try:
        if not ready.wait(10):
            raise AssertionError(f"control server on {path} did not start")
        yield
    finally:
        if running:
            running["loop"].call_soon_threadsafe(running["stop"].set)
        thread.join(10)


class ApiBridge:
    """A host address for a test API server that network namespaces can route to as well
    (``10.233.<id>.1`` on an empty bridge ``mon<id>api``; heartbeat's harness uses 10.232/hb*)."""

    def __init__(self) -> None:
        self.id = 1 + os.getpid() % 250
        self.dev = f"mon{self.id}api"
        self.ip = f"10.233.{self.id}.1"
        self.close()
        for argv in (
            ["ip", "link", "add", self.dev, "type", "bridge"],
            ["ip", "addr", "add", f"{self.ip}/32", "dev", self.dev],
            ["ip", "link", "set", self.dev, "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.dev], capture_output=True, check=False)
