"""What the engine tracks per request in flight, and what it needs of a peer link."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from hastack_blockrepl import fastpath
from hastack_blockrepl.gate import Done


class Link(Protocol):
    """What the engine needs of a peer link (peer.PeerLink)."""

    node_id: int
    name: str
    peer_disk: str

    @property
    def replicating(self) -> bool: ...
    def send_write(self, wid: int, offset: int, data: bytes | memoryview, fua: bool) -> None: ...
    def send_writes(self, wid: int, payload: bytes) -> None: ...
    @property
    def batches(self) -> bool: ...
    def send_zero(self, wid: int, offset: int, length: int, fua: bool) -> None: ...
    def send_flush(self, fid: int) -> None: ...
    def send_read(self, rid: int, offset: int, length: int) -> None: ...
    def send_update(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


@dataclass
class Pending:
    offset: int
    length: int
    done: Done
    peers: set[int]  # peers that have not acknowledged yet
    wait_peers: bool  # protocol B/C: the client waits for them
    local_done: bool = True
    local_ok: bool = True  # False when the local disk failed (or is Diskless): peers must hold it
    acked_by: set[int] = field(default_factory=set)
    answered: bool = False
    t0: float = 0.0
    op: str = "write"
    batch: bytes | None = None  # a write batch (fastpath.py): its writes; ``length``: their data bytes
    exts: tuple[int, ...] = ()  # its activity-log extents (busy until every peer answered)
    count: int = 1  # client requests answered by this one

    def ranges(self) -> list[tuple[int, int]]:
        """The byte ranges written: (offset, length) each."""
        return fastpath.entries(self.batch) if self.batch is not None else [(self.offset, self.length)]
