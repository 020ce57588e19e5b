"""The start gate, the real static binary: it runs the app only while its member is active."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.heartbeat_gate import StateWriter, build_gate
from harness.procs import Supervisor, pid_alive, run, wait_for

APP = """#!/bin/sh
echo $$ > "$DIR/app.pid"
sh -c 'trap "" TERM; while :; do sleep 0.05; done' &
echo $! > "$DIR/grandchild.pid"
trap 'echo usr1 >> "$DIR/app.log"' USR1
trap 'echo term >> "$DIR/app.log"; [ -n "$IGNORE_TERM" ] || exit 7' TERM
echo started >> "$DIR/app.log"
while :; do sleep 0.05; done
"""


@pytest.fixture(scope="module")
def gate() -> Path:
    return build_gate()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, StateWriter, Supervisor]]:
    (tmp_path / "app.sh").write_text(APP)
    (tmp_path / "app.sh").chmod(0o755)
    sup = Supervisor(tmp_path / "logs")
    yield tmp_path, StateWriter(tmp_path), sup
    sup.stop_all(grace=2)
    for name in ("app.pid", "grandchild.pid"):
        p = tmp_path / name
        if p.exists():
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def start_gate(gate: Path, d: Path, sup: Supervisor, **env: str) -> subprocess.Popen[bytes]:
    child = sup.start("gate", [gate, "--state-dir", d, "--", d / "app.sh"], env={"DIR": str(d), **env})
    return child.proc


def app_pid(d: Path) -> int | None:
    p = d / "app.pid"
    return int(p.read_text()) if p.exists() and p.read_text().strip() else None


def test_static_binary(gate: Path) -> None:
    out = run(["file", gate]).stdout
    assert "statically linked" in out


Env = tuple[Path, StateWriter, Supervisor]


def test_app_runs_only_while_active_and_mounted(gate: Path, env: Env) -> None:
    d, state, sup = env
    gen = state.write(role="standby", serve=False)
    start_gate(gate, d, sup)
    wait_for(lambda: (a := state.ack()) and a.generation == gen and not a.running, 10, "standby acknowledged")
    gen = state.write(role="active", serve=True, mounted=False)
    wait_for(lambda: (a := state.ack()) and a.generation == gen, 10, "not-mounted acknowledged")
    assert app_pid(d) is None
    gen = state.write(serve=True, mounted=True)
    pid = wait_for(lambda: app_pid(d), 10, "app started")
    ack = wait_for(lambda: (a := state.ack()) and a.running and a, 10, "running acknowledged")
    assert ack.pid == pid and ack.generation >= gen


def test_demotion_stops_the_app_before_acknowledging(gate: Path,
                                                     env: tuple[Path, StateWriter, Supervisor]) -> None:
    d, state, sup = env
    state.write()
    start_gate(gate, d, sup)
    pid = wait_for(lambda: app_pid(d), 10, "app started")
    grandchild = wait_for(lambda: (d / "grandchild.pid").exists() and int((d / "grandchild.pid").read_text()),
                          10, "grandchild")
    gen = state.write(role="demoting", serve=False, deadline_in=None, grace=1.0)
    ack = wait_for(lambda: (a := state.ack()) and a.generation >= gen and not a.running and a, 10, "stop ack")
    assert not pid_alive(pid), "acknowledged while the app still ran"
    assert not pid_alive(grandchild), "the app's process group must be stopped too (it ignores TERM)"
    assert "term" in (d / "app.log").read_text()
    assert ack.exit_code == 7
    # active again: the app starts again under the same gate
    (d / "app.pid").unlink()
    state.write()
    wait_for(lambda: app_pid(d), 10, "app restarted on promotion")


def test_term_ignored_means_kill_after_grace(gate: Path, env: tuple[Path, StateWriter, Supervisor]) -> None:
    d, state, sup = env
    state.write()
    start_gate(gate, d, sup, IGNORE_TERM="1")
    pid = wait_for(lambda: app_pid(d), 10, "app started")
    t0 = time.monotonic()
    gen = state.write(serve=False, deadline_in=None, grace=1.0)
    wait_for(lambda: (a := state.ack()) and a.generation >= gen and not a.running, 15, "stop ack")
    took = time.monotonic() - t0
    assert not pid_alive(pid)
    assert took >= 1.0, f"KILLed after {took:.2f}s, before the 1 s grace"
    assert state.ack().exit_code == 128 + signal.SIGKILL  # type: ignore[union-attr]


def test_fence_deadline_lapses_when_heartbeat_stops_refreshing(
        gate: Path, env: tuple[Path, StateWriter, Supervisor]) -> None:
    d, state, sup = env
    state.write(deadline_in=30)
    start_gate(gate, d, sup)
    pid = wait_for(lambda: app_pid(d), 10, "app started")
    state.write(deadline_in=1.0, grace=0.5)  # the last refresh heartbeat made before it died
    t0 = time.monotonic()
    wait_for(lambda: not pid_alive(pid), 10, "app stopped at the deadline")
    took = time.monotonic() - t0
    assert 0.9 <= took <= 1.0 + 0.5 + 1.0, f"stopped {took:.2f}s after a 1 s deadline"
    assert "term" in (d / "app.log").read_text()


def test_signals_are_forwarded_and_term_ends_the_gate_with_the_app_status(
        gate: Path, env: tuple[Path, StateWriter, Supervisor]) -> None:
    d, state, sup = env
    state.write()
    proc = start_gate(gate, d, sup)
    wait_for(lambda: app_pid(d), 10, "app started")
    wait_for(lambda: "started" in (d / "app.log").read_text(), 10, "app trap set")
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "usr1" in (d / "app.log").read_text(), 10, "USR1 forwarded")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 7


def test_app_exiting_on_its_own_ends_the_gate_with_its_status(gate: Path, tmp_path: Path) -> None:
    state = StateWriter(tmp_path)
    state.write()
    res = subprocess.run([gate, "--state-dir", tmp_path, "--", "sh", "-c", "exit 3"], timeout=20, check=False)
    assert res.returncode == 3
    assert state.ack().exit_code == 3  # type: ignore[union-attr]


def test_no_command_is_a_usage_error(gate: Path) -> None:
    assert subprocess.run([gate], capture_output=True, check=False).returncode == 2
