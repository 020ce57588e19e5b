"""Expose's kernel-path decisions (pure parts of hastack_common.expose).

The kernel path itself (``nbd-client`` connecting ``/dev/nbdN``) cannot run on the project's
test machines: they have no nbd kernel module and no ``nbd-client``. These tests cover the
decisions around it with real files and real PATH lookups only; nothing here pretends
``nbd-client`` ran. The nbdfuse + loop path is exercised for real in
tests/system/blockrepl/test_expose_fs.py.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_common.expose import (
    Exposed,
    ExposeError,
    client_pid,
    kernel_nbd_available,
    nbd_client_argv,
    nbd_devices,
    read_record,
    reusable,
)


def _bin_dir(tmp_path: Path, executable: bool = True) -> str:
    d = tmp_path / "bin"
    d.mkdir()
    tool = d / "nbd-client"
    tool.write_text("#!/bin/sh\nexit 1\n")  # only found on PATH, never run
    if executable:
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(d)


@pytest.mark.parametrize("device_exists,client,expected", [
    (False, False, False),
    (False, True, False),  # nbd-client installed, no nbd driver: nbdfuse + loop
    (True, False, False),  # the driver without nbd-client: nbdfuse + loop
    (True, True, True),
])  # fmt: skip
def test_kernel_path_needs_both_the_device_and_nbd_client(
    tmp_path: Path, device_exists: bool, client: bool, expected: bool
) -> None:
    device = tmp_path / "nbd0"  # only its existence is consulted
    if device_exists:
        device.touch()
    path = _bin_dir(tmp_path) if client else str(tmp_path / "empty")
    assert kernel_nbd_available(str(device), path) is expected


def test_a_non_executable_nbd_client_does_not_count(tmp_path: Path) -> None:
    device = tmp_path / "nbd0"
    device.touch()
    assert not kernel_nbd_available(str(device), _bin_dir(tmp_path, executable=False))


def test_default_device_is_dev_nbd0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _bin_dir(tmp_path))
    assert kernel_nbd_available() is os.path.exists("/dev/nbd0")


def test_nbd_devices_whole_devices_in_number_order() -> None:
    found = ["/dev/nbd10", "/dev/nbd2", "/dev/nbd0p1", "/dev/nbd0", "/dev/nbd1", "/dev/nbd15p3"]
    assert nbd_devices(found) == ["/dev/nbd0", "/dev/nbd1", "/dev/nbd2", "/dev/nbd10"]


@given(st.lists(st.integers(0, 300), unique=True), st.lists(st.integers(0, 300)))
def test_nbd_devices_property(numbers: list[int], partitions: list[int]) -> None:
    paths = [f"/dev/nbd{n}" for n in numbers] + [f"/dev/nbd{n}p1" for n in partitions]
    assert nbd_devices(paths) == [f"/dev/nbd{n}" for n in sorted(numbers)]


def test_nbd_client_argv_unix_socket() -> None:
    uri = "nbd+unix:///r0?socket=/run/hastack/blockrepl-nbd.sock"
    assert nbd_client_argv(uri, "/dev/nbd3") == [
        "nbd-client", "-unix", "/run/hastack/blockrepl-nbd.sock", "/dev/nbd3", "-N", "r0",
    ]  # fmt: skip


def test_nbd_client_argv_tcp_and_default_port() -> None:
    assert nbd_client_argv("nbd://127.0.0.1:10900/hastack", "/dev/nbd0") == [
        "nbd-client", "127.0.0.1", "10900", "/dev/nbd0", "-N", "hastack",
    ]  # fmt: skip
    assert nbd_client_argv("nbd://localhost/r0", "/dev/nbd0")[1:3] == ["localhost", "10809"]


@pytest.mark.parametrize("uri", ["nbd+unix:///r0", "file:///tmp/x", "nbds://h/r0", "nbd:///r0"])
def test_nbd_client_argv_refuses_what_it_cannot_connect(uri: str) -> None:
    with pytest.raises(ExposeError, match="URI"):
        nbd_client_argv(uri, "/dev/nbd0")


@pytest.mark.parametrize("output,pid", [
    ("4242\n", 4242),
    ("", None),
    ("/dev/nbd0: not connected", None),
    ("Error: cannot open /dev/nbd0: No such file or directory", None),
])  # fmt: skip
def test_client_pid(output: str, pid: int | None) -> None:
    assert client_pid(output) == pid


def test_idempotency_record_round_trip_and_reuse(tmp_path: Path) -> None:
    assert read_record(tmp_path) is None
    exp = Exposed("/dev/nbd2", "nbd", str(tmp_path))
    (tmp_path / "exposed.json").write_text(json.dumps(asdict(exp)))  # as expose writes it
    old = read_record(tmp_path)
    assert old == exp
    assert reusable(old, "777")  # a client still holds the recorded device: the same device again
    assert not reusable(old, "")  # its client died: a fresh connect
    assert not reusable(None, "777")
    fuse = Exposed("/dev/loop4", "nbdfuse", str(tmp_path), "0:52:2")
    assert not reusable(fuse, "777")  # a record of the other path is never taken for a kernel device
