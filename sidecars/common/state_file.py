"""The start gate's contract (DESIGN "Inside a member pod"): ``state.json`` and ``gate.ack``.

heartbeat writes ``/run/hastack/state.json`` (atomically replaced: write a temporary file in the
same directory, fsync, rename); every gated container's start gate reads it and answers in its
own ack file (``gate.ack``, or ``gate.<name>.ack`` when the gate runs with ``--name``).

The app may run only while ``serve`` is true **and** the node's ``CLOCK_MONOTONIC`` is below
``fenceDeadline`` (seconds, the clock Python's ``time.monotonic()`` reads; every container of a
pod shares it). heartbeat keeps pushing the deadline forward while it holds the right to stay
active; if heartbeat dies, the deadline lapses and the gate stops the app (sbd-like self-fencing).

Stopping is TERM, ``stopGraceSeconds``, KILL of the app's process group; then the gate writes its
ack with ``running: false`` and the ``generation`` of the state that made it stop. heartbeat
unmounts only after every gate has acknowledged the generation of its demotion.

The gate (sidecars/gate, Go) reads exactly these field names; change both sides together.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
STATE_NAME = "state.json"
ACK_NAME = "gate.ack"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")


class GateState(_Model):
    version: int = VERSION
    member: str
    role: Literal["standby", "acquiring", "promoting", "active", "demoting"]
    serve: bool  # active and the filesystem mounted: the app may run
    mounted: bool = False
    fence_deadline: float | None = Field(default=None, alias="fenceDeadline")  # CLOCK_MONOTONIC seconds
    stop_grace_seconds: float = Field(default=10.0, alias="stopGraceSeconds", gt=0)
    generation: int = Field(ge=0)


class GateAck(_Model):
    version: int = VERSION
    name: str = ""  # the gate's --name ("" for the default gate.ack)
    generation: int  # generation of the state.json this ack answers
    running: bool
    pid: int = 0
    exit_code: int | None = Field(default=None, alias="exitCode")
    reason: str = ""
    at: float = 0.0  # CLOCK_MONOTONIC seconds when written


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never a mix."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_state(run_dir: str | os.PathLike[str], state: GateState) -> None:
    payload = state.model_dump(by_alias=True)
    write_atomic(Path(run_dir) / STATE_NAME, json.dumps(payload, separators=(",", ":")).encode() + b"\n")


def read_state(run_dir: str | os.PathLike[str]) -> GateState | None:
    try:
        return GateState.model_validate_json((Path(run_dir) / STATE_NAME).read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def ack_name(gate_name: str = "") -> str:
    return f"gate.{gate_name}.ack" if gate_name else ACK_NAME


def read_acks(run_dir: str | os.PathLike[str]) -> dict[str, GateAck]:
    """Every gate's latest ack in ``run_dir``, keyed by gate name ("" for ``gate.ack``)."""
    acks: dict[str, GateAck] = {}
    for p in Path(run_dir).glob("gate*.ack"):
        try:
            ack = GateAck.model_validate_json(p.read_bytes())
        except (OSError, ValueError):
            continue
        acks[ack.name] = ack
    return acks


def all_stopped(acks: dict[str, GateAck], generation: int, exited_count: bool = False) -> bool:
    """True when every gate has acknowledged ``generation`` (or later) with its app stopped.

    ``exited_count``: a gate whose last ack says its app exited (an exit code: the gate exited
    with it) counts as stopped without acknowledging ``generation`` -- it is gone and cannot.
    Only for a caller that has waited long enough for a restarted gate to have written a fresh
    ack: a gate starts the app only after reading a serving state, and acks at once.
    """
    return all((a.generation >= generation or (exited_count and a.exit_code is not None)) and not a.running
               for a in acks.values())


def apps_down(acks: dict[str, GateAck], since_generation: int, now: float, after: float) -> list[str]:
    """Gates whose app exited while serving (an ack of ``since_generation`` or later that says the
    app is not running and gives its exit code) and has been down for ``after`` seconds or more,
    by ``now`` (CLOCK_MONOTONIC, the clock of the acks). One line each, for the failure reason."""
    down = []
    for name, ack in sorted(acks.items()):
        if ack.generation >= since_generation and not ack.running and ack.exit_code is not None \
                and now - ack.at >= after:
            down.append(f"app {name or 'gate'} exited {ack.exit_code} ({ack.reason or 'no reason'}) "
                        f"{now - ack.at:.0f}s ago and has not run since")
    return down
