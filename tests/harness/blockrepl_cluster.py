"""Real blockrepl replica processes for system tests: configs, start/stop/kill, control calls, waits."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.procs import Child, Supervisor, free_port, wait_for
from hastack_common.ctlsock import ControlError, call_sync

__all__ = ["Cluster", "Replica", "cluster", "free_port", "make_disk", "try_call", "wait_for"]

SECRET = b"test-secret-0123456789abcdef"


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
    sup: Supervisor
    netns: str | None = None
    child: Child | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the replica process
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
        env = {"HASTACK_LOG_LEVEL": "DEBUG" if os.environ.get("BLOCKREPL_DEBUG") else "INFO", **self.env}
        self.child = self.sup.start(f"node{self.node_id}", cmd, env=env)
        self.log = self.child.log_path
        if wait:
            wait_for(self.up, 30, f"node {self.node_id} control socket")

    def up(self) -> bool:
        return self.alive_or_raise() and bool(self.status())

    def alive_or_raise(self) -> bool:
        if self.child is not None and not self.child.running:
            raise AssertionError(f"node {self.node_id} exited {self.child.proc.returncode}:\n{self.child.tail(40)}")
        return True

    def call(self, cmd: str, timeout: float = 20.0, **args: Any) -> Any:
        return call_sync(self.ctl, cmd, args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        return self.call("status")  # type: ignore[no-any-return]

    def peer(self, node_id: int) -> dict[str, Any]:
        return next(p for p in self.status()["peers"] if p["node_id"] == node_id)

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    def kill(self) -> None:
        """SIGKILL the replica process (a crash: no orderly metadata write)."""
        if self.child is not None and self.child.running:
            os.kill(self.child.pid, signal.SIGKILL)
            self.child.proc.wait(10)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=15)

    def read_disk(self, offset: int, length: int) -> bytes:
        """Bytes of the backing file (data sits at the start; internal metadata at the end)."""
        with open(self.disk, "rb") as f:
            return os.pread(f.fileno(), length, offset)

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
        net: dict[str, Any] | None = None,
        peer_address: Callable[[int, int], str] | None = None,
        metrics: bool = False,
        **extra: Any,
    ) -> None:
        self.root, self.size = root, size
        self.sup = Supervisor(root / "logs")
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
                    "listen": "0.0.0.0:7788" if netns else f"127.0.0.1:{ports[i]}",
                    "protocol": protocol,
                    "secretFile": str(secret),
                    "pingInterval": "300ms",
                    "pingTimeout": "1500ms",
                    "reconnectMin": "100ms",
                    "reconnectMax": "1s",
                },
                "peers": [
                    {
                        "nodeId": j,
                        "name": f"node{j}",
                        "address": peer_address(j, i) if peer_address else addrs[j],
                    }
                    for j in range(n)
                    if j != i
                ],
                "fencing": "resource-only" if fence_cmd else "dont-care",
                "metrics": {"listen": f"127.0.0.1:{free_port()}" if metrics else None},
            }
            cfg["net"].update(net or {})
            if fence_cmd:
                cfg["handlers"] = {"fencePeer": fence_cmd}
            for k, v in extra.items():
                cfg[k] = v
            self.replicas.append(Replica(i, root, cfg, self.sup, netns[i] if netns else None))

    def pids(self) -> list[int]:
        return [r.child.pid for r in self.replicas if r.child is not None]

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
        self.sup.stop_all()

    def logs(self) -> str:
        return "\n".join(f"--- node {r.node_id}\n{r.child.tail(40)}" for r in self.replicas if r.child)


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


def closed_by_server(s: socket.socket, timeout: float = 10) -> bool:
    """Whether the replica closes this connection (reads until EOF or reset; False on timeout)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def try_call(r: Replica, cmd: str, **args: Any) -> tuple[bool, Any]:
    try:
        return True, r.call(cmd, **args)
    except ControlError as exc:
        return False, str(exc)


def fence_script(root: Path) -> list[str]:
    """Outdate the peer over its control socket; log start and success times."""
    script = root / "fence-peer.sh"
    script.write_text(f"""#!/bin/sh
echo "start $HASTACK_PEER_NODE_ID $(date +%s.%N)" >> {root}/fence.log
sleep 0.5
{sys.executable} -m hastack_blockrepl outdate --socket {root}/ctl$HASTACK_PEER_NODE_ID.sock --json || exit 1
echo "outdated $HASTACK_PEER_NODE_ID $(date +%s.%N)" >> {root}/fence.log
exit 4
""")
    script.chmod(0o755)
    return [str(script)]
