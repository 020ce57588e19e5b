"""Typed configuration of the blockrepl sidecar (rendered by the operator, or written by hand).

One YAML file per replica. Field names are camelCase as in the CRDs; durations are Go-style
strings (``"500ms"``) or numbers of seconds; sizes are integers of bytes or strings with a
binary suffix (``"64MiB"``, ``"100M"`` = 100 MiB). Unknown fields are refused, so a typo is
an error that names the field, never a silently ignored knob.

``metadata_bytes(volume_size, max_peers)`` is the one function that sizes the metadata area:
the operator sizes PVCs with it (PVC = volume + metadata) and blockrepl lays it out with it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from hastack_common.durations import DurationError, parse_duration

BLOCK = 4096  # bytes per bitmap bit (DRBD's granularity)
AL_EXTENT = 4 << 20  # bytes per activity-log extent
MAX_PEERS = 2  # 3 replicas at most


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def bitmap_bytes(volume_size: int) -> int:
    """Bytes of one per-peer dirty bitmap (one bit per 4 KiB block), rounded to 4 KiB."""
    return _round_up(_round_up(volume_size, BLOCK) // BLOCK // 8 or 1, BLOCK)


def metadata_bytes(volume_size: int, max_peers: int = MAX_PEERS) -> int:
    """Size of the metadata area for a volume: 2 superblock slots, 2 AL slots, one bitmap per peer.

    The result is a multiple of 1 MiB so that internal metadata starts on an aligned offset.
    """
    raw = 4 * BLOCK + max_peers * bitmap_bytes(volume_size)
    return _round_up(raw, 1 << 20)


_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MULT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError('size must be bytes or a string such as "64MiB"')
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * _MULT[(m.group(2) or "")[:1].lower()]
    raise ValueError(f'invalid size {value!r}: write bytes or a number with K/M/G/T (binary), e.g. "64MiB"')


def parse_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError('duration must be a string such as "500ms" or a number of seconds')
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from exc


Size = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[float, BeforeValidator(parse_seconds)]
Protocol = Literal["A", "B", "C"]
AfterSb0Pri = Literal[
    "disconnect",
    "discard-younger-primary",
    "discard-older-primary",
    "discard-zero-changes",
    "discard-least-changes",
]
AfterSb1Pri = Literal["disconnect", "consensus", "discard-secondary", "call-pri-lost-after-sb"]
AfterSb2Pri = Literal["disconnect", "call-pri-lost-after-sb"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


def _host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f'{what} {value!r} must be host:port, e.g. "10.0.0.2:7788"')
    return host.strip("[]"), int(port)


class Disk(_Model):
    path: str = Field(description="backing block device or file")
    metadata: str = Field("internal", description='"internal" (at the end of the device) or a file path')
    on_io_error: Literal["detach", "pass-on"] = "detach"


class Nbd(_Model):
    socket: str | None = "/run/hastack/blockrepl-nbd.sock"
    listen: str | None = Field(None, description="localhost TCP address instead of/in addition to the socket")
    export_name: str = "hastack"

    @model_validator(mode="after")
    def _localhost_only(self) -> Nbd:
        if self.listen is not None:
            host, _ = _host_port(self.listen, "nbd.listen")
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise ValueError(f"nbd.listen {self.listen!r} must be a loopback address (127.0.0.1 or ::1)")
        if self.socket is None and self.listen is None:
            raise ValueError("nbd needs a socket or a listen address")
        return self


class Peer(_Model):
    node_id: int = Field(ge=0, le=31)
    name: str = ""
    address: str

    @model_validator(mode="after")
    def _addr(self) -> Peer:
        _host_port(self.address, f"peers[{self.node_id}].address")
        return self


class Net(_Model):
    listen: str = "0.0.0.0:7788"
    protocol: Protocol = "C"
    secret_file: str
    ping_interval: Seconds = 1.0
    ping_timeout: Seconds = 3.0
    connect_timeout: Seconds = 5.0
    reconnect_min: Seconds = 0.2
    reconnect_max: Seconds = 5.0
    max_buffer: Size = 8 << 20
    allow_two_primaries: bool = False
    congestion_control: str = Field(
        "cubic",
        pattern=r"^[a-z0-9_-]{0,15}$",
        description='TCP congestion control of the replication connections; "" keeps the host\'s default',
    )

    @model_validator(mode="after")
    def _check(self) -> Net:
        _host_port(self.listen, "net.listen")
        if self.ping_timeout <= self.ping_interval:
            raise ValueError("net.pingTimeout must be greater than net.pingInterval")
        return self


class SplitBrain(_Model):
    after_sb_0pri: AfterSb0Pri = Field("disconnect", alias="afterSb0Pri")
    after_sb_1pri: AfterSb1Pri = Field("disconnect", alias="afterSb1Pri")
    after_sb_2pri: AfterSb2Pri = Field("disconnect", alias="afterSb2Pri")


class Handlers(_Model):
    fence_peer: list[str] | None = Field(None, description="command run when a peer is lost while Primary")
    outdate_peer_socket: str | None = Field(
        None, description="built-in fence-peer handler: heartbeat's control socket, asked to record the lost "
                          "peer Outdated on the Lease (hastack_common.outdate_peer); replaces fencePeer")
    fence_timeout: Seconds = 30.0
    pri_lost_after_sb: list[str] | None = None


class Sync(_Model):
    rate: Size = 100 << 20
    verify_schedule: str | None = Field(None, description="cron string for online verify")


class Metrics(_Model):
    listen: str | None = "0.0.0.0:9781"


class BlockreplConfig(_Model):
    resource: str = "r0"
    node_id: int = Field(ge=0, le=31)
    size: Size | None = Field(None, description="volume size; default: what the backing device allows")
    disk: Disk
    nbd: Nbd = Field(default_factory=lambda: Nbd.model_validate({}))
    control_socket: str = "/run/hastack/blockrepl.sock"
    net: Net
    peers: list[Peer] = []
    sync: Sync = Field(default_factory=lambda: Sync.model_validate({}))
    split_brain: SplitBrain = Field(default_factory=lambda: SplitBrain.model_validate({}))
    fencing: Literal["dont-care", "resource-only"] = "resource-only"
    handlers: Handlers = Field(default_factory=lambda: Handlers.model_validate({}))
    metrics: Metrics = Field(default_factory=lambda: Metrics.model_validate({}))

    @model_validator(mode="after")
    def _check(self) -> BlockreplConfig:
        ids = [p.node_id for p in self.peers]
        if self.node_id in ids:
            raise ValueError(f"peers must not include this node's own nodeId {self.node_id}")
        if len(set(ids)) != len(ids):
            raise ValueError("peers: duplicate nodeId")
        if len(ids) > MAX_PEERS:
            raise ValueError(f"peers: at most {MAX_PEERS} peers (3 replicas)")
        if self.handlers.fence_peer and self.handlers.outdate_peer_socket:
            raise ValueError("handlers: set fencePeer (a command) or outdatePeerSocket (heartbeat's socket), not both")
        has_handler = self.handlers.fence_peer or self.handlers.outdate_peer_socket
        if self.fencing == "resource-only" and self.peers and not has_handler:
            raise ValueError(
                "fencing: resource-only needs handlers.fencePeer (a command that outdates the peer) or "
                "handlers.outdatePeerSocket (heartbeat records it on the Lease); "
                "set fencing: dont-care to run without (a lost peer may then be promoted with stale data)"
            )
        if self.size is not None and self.size % BLOCK:
            raise ValueError(f"size must be a multiple of {BLOCK} bytes")
        return self


class ConfigError(Exception):
    """A config that cannot be used; the message names the field."""


def load(path: str | Path) -> BlockreplConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    return parse(raw, str(path))


def parse(raw: Any, source: str = "config") -> BlockreplConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return BlockreplConfig.model_validate(raw)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msgs.append(f"{where}: {err['msg']}")
        raise ConfigError(f"{source}: " + "; ".join(msgs)) from None


def render(cfg: BlockreplConfig) -> str:
    """YAML as the operator writes it into the ConfigMap."""
    return yaml.safe_dump(cfg.model_dump(by_alias=True, exclude_none=True), sort_keys=False)
