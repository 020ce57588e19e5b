"""The process refuses a bad configuration or a missing disk with one line that says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hastack_blockrepl", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_bad_field_is_named_and_exit_is_non_zero(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodeId: 0\ndisk: {path: /nonexistent}\nnet: {secretFile: /s, protocol: D, pingTimout: 3s}\n")
    res = run(cfg)
    assert res.returncode == 2
    assert "net.protocol" in res.stderr and "net.pingTimout" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_disk_is_explained(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"nodeId: 0\ndisk: {{path: {tmp_path}/nope.img}}\nnet: {{secretFile: /s}}\n"
                   f"controlSocket: {tmp_path}/ctl.sock\nnbd: {{socket: {tmp_path}/nbd.sock}}\n"
                   "metrics: {listen: null}\n")  # fmt: skip
    res = run(cfg)
    assert res.returncode == 1 and "cannot open backing disk" in res.stderr and "nope.img" in res.stderr
