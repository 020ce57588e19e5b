"""Real blockrepl replica processes for system tests: configs, start/stop/kill, control calls, waits."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hastack_common.ctlsock import ControlError, call_sync

SECRET = b"test-secret-0123456789abcdef"


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = cond()
            if got:
                return got
        except Exception as exc:  # the condition may raise while the process starts
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_disk(path: Path, size: int) -> Path:
    """A preallocated backing file (allocation cost stays out of every measurement)."""
    with open(path, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return path


@dataclass
class Replica:
    node_id: int
    dir: Path
    cfg: dict[str, Any]
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / f"node{self.node_id}.log"

    @property
    def ctl(self) -> str:
        return str(self.cfg["controlSocket"])

    @property
    def nbd(self) -> str:
        return str(self.cfg["nbd"]["socket"])

    @property
    def nbd_uri(self) -> str:
        return f"nbd+unix:///{self.cfg['nbd'].get('exportName', 'hastack')}?socket={self.nbd}"

    @property
    def disk(self) -> Path:
        return Path(self.cfg["disk"]["path"])

    def write_config(self) -> Path:
        p = self.dir / f"node{self.node_id}.yaml"
        p.write_text(yaml.safe_dump(self.cfg))
        return p

    def start(self, wait: bool = True) -> None:
        cfgp = self.write_config()
        cmd = [sys.executable, "-m", "hastack_blockrepl", "--config", str(cfgp)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        env = dict(os.environ, HASTACK_LOG_LEVEL="DEBUG" if os.environ.get("BLOCKREPL_DEBUG") else "INFO")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
        if wait:
            wait_for(
                lambda: self.alive_or_raise() and self.status(), 30, f"node {self.node_id} control socket"
            )

    def up(self) -> bool:
        return self.alive_or_raise() and bool(self.status())

    def alive_or_raise(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"node {self.node_id} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        return True

    def call(self, cmd: str, timeout: float = 20.0, **args: Any) -> Any:
        return call_sync(self.ctl, cmd, args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        return self.call("status")  # type: ignore[no-any-return]

    def peer(self, node_id: int) -> dict[str, Any]:
        return next(p for p in self.status()["peers"] if p["node_id"] == node_id)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def data_hash(self, size: int) -> str:
        h = hashlib.sha256()
        with open(self.disk, "rb") as f:
            left = size
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
        return h.hexdigest()


class Cluster:
    """N replicas on loopback (or in given network namespaces) sharing one secret."""

    def __init__(
        self,
        root: Path,
        n: int,
        size: int = 64 << 20,
        protocol: str = "C",
        addresses: list[str] | None = None,
        netns: list[str] | None = None,
        fence_cmd: list[str] | None = None,
        **extra: Any,
    ) -> None:
        self.root, self.size = root, size
        secret = root / "secret"
        secret.write_bytes(SECRET)
        ports = [free_port() for _ in range(n)]
        addrs = addresses or [f"127.0.0.1:{p}" for p in ports]
        self.replicas: list[Replica] = []
        for i in range(n):
            disk = make_disk(root / f"disk{i}.img", size + (4 << 20))
            cfg: dict[str, Any] = {
                "resource": "r0",
                "nodeId": i,
                "size": size,
                "disk": {"path": str(disk), "metadata": "internal"},
                "nbd": {"socket": str(root / f"nbd{i}.sock"), "exportName": "r0"},
                "controlSocket": str(root / f"ctl{i}.sock"),
                "net": {
                    "listen": addrs[i] if netns else f"127.0.0.1:{ports[i]}",
                    "protocol": protocol,
                    "secretFile": str(secret),
                    "pingInterval": "300ms",
                    "pingTimeout": "1500ms",
                    "reconnectMin": "100ms",
                    "reconnectMax": "1s",
                },
                "peers": [{"nodeId": j, "name": f"node{j}", "address": addrs[j]} for j in range(n) if j != i],
                "fencing": "resource-only" if fence_cmd else "dont-care",
                "metrics": {"listen": None},
            }
            if fence_cmd:
                cfg["handlers"] = {"fencePeer": fence_cmd}
            for k, v in extra.items():
                cfg[k] = v
            self.replicas.append(Replica(i, root, cfg, netns[i] if netns else None))

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def start(self) -> None:
        for r in self.replicas:
            r.start(wait=False)
        for r in self.replicas:
            wait_for(r.up, 30, f"node {r.node_id} up")

    def wait_connected(self, timeout: float = 30) -> None:
        def ok() -> bool:
            for r in self.replicas:
                for p in r.status()["peers"]:
                    if p["replication"] != "Established" or p["peer_disk"] != "UpToDate":
                        return False
            return True

        wait_for(ok, timeout, "every replica Established and UpToDate")

    def stop(self) -> None:
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.stop()
            if r.proc is not None and r.proc.poll() is None:
                r.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- node {r.node_id}\n{r.log.read_text()[-4000:]}" for r in self.replicas if r.log.exists()
        )


@contextlib.contextmanager
def cluster(root: Path, n: int, **kw: Any) -> Iterator[Cluster]:
    c = Cluster(root, n, **kw)
    try:
        c.start()
        yield c
    except BaseException:
        sys.stderr.write(c.logs())
        raise
    finally:
        c.stop()


def try_call(r: Replica, cmd: str, **args: Any) -> tuple[bool, Any]:
    try:
        return True, r.call(cmd, **args)
    except ControlError as exc:
        return False, str(exc)
