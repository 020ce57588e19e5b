"""A handler command (fence-peer, pri-lost-after-sb) dies with the replica that ran it: an
orphaned fence-peer handler once outdated a peer after that peer had resynced and become the
only UpToDate replica (found by tests/system/blockrepl/test_nemesis.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hastack_blockrepl import fence

RUNNER = """
import asyncio, sys
from hastack_blockrepl import fence
asyncio.run(fence.run_command(["sh", "-c", sys.argv[1]], {}, 60, "test handler"))
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.mark.skipif(fence.SETPRIV is None, reason="setpriv (util-linux) not installed")
def test_a_handler_is_killed_when_its_replica_dies(tmp_path: Path) -> None:
    pidfile, mark = tmp_path / "handler.pid", tmp_path / "acted"
    script = f"echo $$ > {pidfile}; sleep 30; touch {mark}"
    replica = subprocess.Popen([sys.executable, "-c", RUNNER, script])
    try:
        _wait(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the handler to start")
        handler = int(pidfile.read_text())
        assert _alive(handler)
        os.kill(replica.pid, signal.SIGKILL)
        replica.wait(10)
        _wait(lambda: not _alive(handler), 10, "the handler to die with its replica")
        assert not mark.exists()
    finally:
        if replica.poll() is None:
            replica.kill()
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
