"""fsinit against real devices: real mkfs, fsck, blkid and wipefs on loop devices and files.

Run in its standalone mode (the caller vouches for the Lease and a never-written volume),
so these tests judge the last gate — the signature check — and the formatting itself.
The Lease and day-0 gates are exercised with the real sidecars in the heartbeat tests.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE = 320 << 20  # xfs needs 300 MiB


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=check)


def fsinit(*args: str) -> subprocess.CompletedProcess[str]:
    return sh(sys.executable, "-m", "hastack_common.cli", "fsinit", "--standalone", *args, check=False)


def digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    f = tmp_path / "disk.img"
    with open(f, "wb") as out:
        out.truncate(SIZE)
    return f


@pytest.fixture
def loopdev(backing: Path) -> Iterator[str]:
    dev = sh("losetup", "--find", "--show", str(backing)).stdout.strip()
    try:
        yield dev
    finally:
        sh("losetup", "-d", dev, check=False)


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
def test_blank_loop_device_is_formatted_and_checks_clean(loopdev: str, fs: str) -> None:
    res = fsinit("--fs-type", fs, "--device", loopdev, "--label", "hastack-data")
    assert res.returncode == 0, res.stderr
    assert "action=format" in res.stderr
    assert sh("blkid", "-p", "-s", "TYPE", "-o", "value", loopdev).stdout.strip() == fs
    check = {"ext4": ["fsck.ext4", "-n", "-f"], "xfs": ["xfs_repair", "-n"], "btrfs": ["btrfs", "check"]}[fs]
    assert sh(*check, loopdev).returncode == 0


def test_file_backed_device_is_formatted(backing: Path) -> None:
    res = fsinit("--fs-type", "ext4", "--device", str(backing))
    assert res.returncode == 0 and "action=format" in res.stderr, res.stderr
    assert sh("fsck.ext4", "-n", "-f", str(backing)).returncode == 0


def test_device_with_data_is_never_formatted(loopdev: str, tmp_path: Path) -> None:
    sh("mkfs.ext4", "-q", loopdev)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", loopdev, str(mnt))
    try:
        (mnt / "precious").write_bytes(b"acknowledged" * 1000)
    finally:
        sh("umount", str(mnt))
    before = digest(loopdev)
    for fs in ("ext4", "xfs"):
        res = fsinit("--fs-type", fs, "--device", loopdev)
        assert res.returncode == 0, res.stderr
        assert "action=skip" in res.stderr and "carries a signature (ext4" in res.stderr
    assert digest(loopdev) == before


FOREIGN = {
    "swap": ["mkswap"],
    "lvm": ["pvcreate", "-q", "--config",
            "activation{udev_sync=0 udev_rules=0} devices{obtain_device_list_from_udev=0}"],
    "gpt": None,
    "dos": None,
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_foreign_signature_is_left_byte_identical(loopdev: str, kind: str) -> None:
    if kind in ("gpt", "dos"):
        argv = ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--label", kind, loopdev]
        proc = subprocess.run(argv, input="size=100MiB\n", capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, proc.stderr
    else:
        argv = FOREIGN[kind]
        assert argv is not None
        sh(*argv, loopdev)
    before = digest(loopdev)
    res = fsinit("--fs-type", "ext4", "--device", loopdev)
    assert res.returncode == 0, res.stderr
    assert "action=skip" in res.stderr and "carries a signature" in res.stderr, res.stderr
    assert digest(loopdev) == before
    if kind == "lvm":
        sh("pvremove", "-q", "-ff", "-y", loopdev, check=False)


def test_reiserfs_refused_where_the_kernel_lacks_it(loopdev: str) -> None:
    with open("/proc/filesystems") as f:
        if "reiserfs" in f.read():
            pytest.skip("this kernel still has reiserfs")
    before = digest(loopdev)
    res = fsinit("--fs-type", "reiserfs", "--device", loopdev)
    assert res.returncode == 1
    assert "not supported by this node's kernel" in res.stderr
    assert digest(loopdev) == before


def test_force_flags_are_refused(loopdev: str) -> None:
    res = fsinit("--fs-type", "xfs", "--device", loopdev, "--mkfs-option=-f")
    assert res.returncode != 0 and "never forces mkfs" in res.stderr


def test_signature_check_is_what_protects_foreign_data(loopdev: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switched off (test-only), the same judge catches mkfs.ext4 silently formatting over swap."""
    from hastack_fsinit import __main__ as fsinit_main
    from hastack_fsinit import device

    sh("mkswap", loopdev)
    before = digest(loopdev)
    monkeypatch.setattr(device, "signatures", lambda _dev: ())
    assert fsinit_main.main(["--standalone", "--fs-type", "ext4", "--device", loopdev]) == 0
    assert digest(loopdev) != before
