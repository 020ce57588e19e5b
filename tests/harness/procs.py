"""Process plumbing shared by the test harnesses: deadlines, free ports, supervised children.

Every child runs in its own process group (so a stop reaches everything it forked) and
gets PR_SET_PDEATHSIG=SIGKILL (so it dies with the test run even when pytest itself is
SIGKILLed and no finaliser runs). `Supervisor` remembers what it started and stops it
all, newest first, from a fixture finaliser and from `atexit`.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

log = logging.getLogger("harness.procs")

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


class Timeout(AssertionError):
    """A condition was not met before its deadline (an AssertionError so pytest shows it plainly)."""


def wait_for(
    cond: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    max_interval: float = 0.5,
) -> T:
    """Poll `cond` until it returns something truthy, and return that; raise Timeout at the deadline.

    Exceptions raised by `cond` count as "not yet"; the last one is quoted in the Timeout.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            hint = f" (last error: {last_exc!r})" if last_exc else ""
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}{hint}")
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, below the kernel's ephemeral range: a port from
    that range can be taken, between this call and the server's bind, as the source port of an
    outgoing connection (a kube-apiserver's own connections to etcd did, and it exited with
    "address already in use"). Never the same port twice in one test process."""
    rng = random.Random()
    low = _ephemeral_low()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 20000), min(low, 30000))  # 30000+: Kubernetes' NodePorts
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # the kernel's choice, as a last resort
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (PID 1 here reaps orphans late)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """TERM the whole process group, KILL it after `grace`, and reap."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("stop name=%s pid=%d did not exit on TERM; KILL", self.name, self.pid)
        _signal_group(self.proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.error("stop name=%s pid=%d survived KILL", self.name, self.pid)
        self._log_file.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """Starts children and guarantees they are stopped: explicitly, or at interpreter exit."""

    def __init__(self, log_dir: Path, detached: bool = False) -> None:
        """detached: children outlive this process (no PDEATHSIG, no atexit stop); whoever stops
        them later finds them by their command line (the lab does)."""
        self.log_dir = log_dir
        self.detached = detached
        self.children: list[Child] = []
        if not detached:
            atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed by Child.stop
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=None if self.detached else _die_with_parent,  # noqa: PLW1509 - only prctl
        )
        child = Child(name, proc, log_path, log_file)
        self.children.append(child)
        log.info("started name=%s pid=%d log=%s", name, proc.pid, log_path)
        return child

    def pids(self) -> list[int]:
        return [c.pid for c in self.children]

    def stop_all(self, grace: float = 5.0) -> None:
        while self.children:
            child = self.children.pop()
            child.stop(grace)
        atexit.unregister(self.stop_all)


def run(
    argv: Sequence[str | os.PathLike[str]],
    timeout: float = 60.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command; on failure raise with its output, so the test log explains."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    res = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input,
        check=False,
    )
    if check and res.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {res.returncode}): {' '.join(map(str, argv))}\n"
            f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"
        )
    return res
