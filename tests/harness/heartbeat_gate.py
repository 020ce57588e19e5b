"""The start gate under test: built once per source version, and a driver for its state file.

The binary is built with sidecars/gate/build.sh into ``$HASTACK_CACHE/gate/<source hash>/gate``
(default ``~/.cache/hastack``), so a warm run costs nothing and a changed source rebuilds.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from harness.procs import run
from hastack_common import state_file

GATE_SRC = Path(__file__).resolve().parents[2] / "sidecars" / "gate"


def build_gate() -> Path:
    digest = hashlib.sha256()
    for p in sorted(GATE_SRC.iterdir()):
        if p.is_file():
            digest.update(p.name.encode() + p.read_bytes())
    cache = Path(os.environ.get("HASTACK_CACHE", Path.home() / ".cache" / "hastack"))
    out = cache / "gate" / digest.hexdigest()[:16]
    binary = out / "gate"
    if not binary.exists():
        run([GATE_SRC / "build.sh", out], timeout=600)
    return binary


class StateWriter:
    """Writes state.json as heartbeat does (same model, same atomic replace)."""

    def __init__(self, run_dir: Path, member: str = "web-0") -> None:
        self.run_dir, self.member, self.generation = run_dir, member, 0

    def write(self, role: str = "active", serve: bool = True, mounted: bool = True,
              deadline_in: float | None = 30.0, grace: float = 2.0) -> int:
        self.generation += 1
        deadline = None if deadline_in is None else time.monotonic() + deadline_in
        state_file.write_state(self.run_dir, state_file.GateState(
            member=self.member, role=role, serve=serve, mounted=mounted,  # type: ignore[arg-type]
            fence_deadline=deadline, stop_grace_seconds=grace, generation=self.generation))
        return self.generation

    def ack(self, name: str = "") -> state_file.GateAck | None:
        return state_file.read_acks(self.run_dir).get(name)
