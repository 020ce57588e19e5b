"""fio's nbd engine as the judge of "no acknowledged write lost" (see notes/fio-verify.md).

A write pass runs ``JOBS`` jobs at iodepth=1 on disjoint ranges from ``offset``, one pass only (no wrap),
saving fio's verify state in its working directory when the server dies under it. The
verify pass loads that state and checks, against another replica, exactly the writes fio
saw acknowledged. Same job layout in both passes, or the verdict is meaningless. The verify
pass must not save state: fio 3.33 would overwrite the write pass's state with one claiming
every write of the layout, and a second verify of an interrupted round then fails on blocks
never written (measured).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

JOBS = 4


def layout(uri: str, per_job: int, bs: str, offset: int = 0) -> list[str]:
    return [
        "fio", "--name=judge", "--ioengine=nbd", f"--uri={uri}", "--rw=randwrite", f"--bs={bs}",
        "--iodepth=1", f"--numjobs={JOBS}", f"--size={per_job}", f"--offset={offset}", f"--offset_increment={per_job}",
        "--verify=crc32c", "--verify_state_save=1", "--group_reporting",
    ]  # fmt: skip


def start_write(cwd: Path, uri: str, per_job: int, bs: str = "4k", offset: int = 0) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*layout(uri, per_job, bs, offset), "--do_verify=0"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def verify(cwd: Path, uri: str, per_job: int, bs: str = "4k", offset: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*layout(uri, per_job, bs, offset), "--verify_only", "--verify_state_load=1", "--verify_state_save=0"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def state_files(cwd: Path) -> list[Path]:
    return sorted(cwd.glob("local-judge-*-verify.state"))
