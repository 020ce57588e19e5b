"""hastack_common.subproc: the one way sidecars run a short command with a deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from hastack_common import subproc


def test_exit_code_and_both_streams() -> None:
    code, out = asyncio.run(subproc.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10))
    assert code == 3 and out.split() == ["out", "err"]


def test_environment_is_the_one_given() -> None:
    env = {"ONLY": "this", "PATH": "/bin:/usr/bin"}
    code, out = asyncio.run(subproc.run(["sh", "-c", 'echo "$ONLY"'], 10, env=env))
    assert (code, out) == (0, "this")


def test_killed_and_reaped_at_the_deadline() -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(subproc.run(["sleep", "30"], 0.3))
    assert time.monotonic() - t0 < 10


def test_a_command_that_cannot_start_raises_oserror() -> None:
    with pytest.raises(OSError):
        asyncio.run(subproc.run(["/nonexistent/hastack-no-such-command"], 10))
