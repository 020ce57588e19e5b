"""What is on a block device, asked of the real tools (blkid, wipefs), never guessed."""

from __future__ import annotations

import os
import shutil
import subprocess

TOOLS = ("blkid", "wipefs")


def kernel_filesystems(path: str = "/proc/filesystems") -> frozenset[str]:
    with open(path, encoding="ascii") as f:
        return frozenset(line.split()[-1] for line in f if line.strip())


def missing_tools(fs_type: str) -> tuple[str, ...]:
    wanted = (*TOOLS, f"mkfs.{fs_type}", f"fsck.{fs_type}" if fs_type != "btrfs" else "btrfs")
    return tuple(t for t in wanted if shutil.which(t) is None)


def signatures(device: str) -> tuple[str, ...]:
    """Every signature wipefs and blkid's low-level probe find: filesystems, RAID, LVM, swap,
    partition tables. An empty tuple means the device looks blank to both."""
    found: list[str] = []
    res = subprocess.run(["wipefs", "--no-act", "--noheadings", "--output", "TYPE,OFFSET", device],
                         capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise OSError(f"wipefs could not read {device}: {res.stderr.strip()}")
    found += [f"{line.split()[0]}@{line.split()[1]}" for line in res.stdout.splitlines() if line.strip()]
    res = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True,
                         timeout=60, check=False)
    # blkid -p: 0 found something, 2 found nothing, anything else is an error
    if res.returncode not in (0, 2):
        raise OSError(f"blkid could not probe {device}: {res.stderr.strip() or res.returncode}")
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in ("TYPE", "PTTYPE") and not any(s.startswith(value + "@") for s in found):
            found.append(value)
    return tuple(found)


def flush(device: str) -> None:
    fd = os.open(device, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
