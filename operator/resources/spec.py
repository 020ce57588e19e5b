"""Typed, read-only views of the custom resources' specs (defaults are the CRD's).

The API server already validated and defaulted every field; these accessors only give
the builders names instead of dictionary paths. A spec that cannot be served raises
:class:`SpecError` with a message for the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hastack_common import consts


class SpecError(ValueError):
    """The object is valid for the API server but cannot be served."""


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    mount_path: str | None = None
    port: int | None = None
    target_port: int | None = None


@dataclass(frozen=True)
class HACluster:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]

    @classmethod
    def from_body(cls, body: Any) -> HACluster:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta.get("uid", ""), int(meta.get("generation") or 0),
                   dict(body.get("spec") or {}))

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", 2))

    @property
    def template(self) -> dict[str, Any]:
        return dict(self.spec.get("template") or {})

    @property
    def heartbeat(self) -> dict[str, Any]:
        return dict(self.spec.get("heartbeat") or {})

    @property
    def failover(self) -> dict[str, Any]:
        return dict(self.spec.get("failover") or {})

    @property
    def mount_root(self) -> str:
        return str(self.spec.get("mountRoot", "/var/lib/hastack/mounts"))

    @property
    def resources(self) -> list[Resource]:
        return [Resource(r["kind"], r["name"], r.get("mountPath"), r.get("port"), r.get("targetPort"))
                for r in self.spec.get("resources") or []]

    def resource(self, kind: str) -> Resource | None:
        return next((r for r in self.resources if r.kind == kind), None)

    @property
    def host_mount_dir(self) -> str:
        """One directory per member: anti-affinity puts at most one member of a cluster on a node."""
        return f"{self.mount_root.rstrip('/')}/{self.namespace}/{self.name}"

    @property
    def heartbeat_port(self) -> int:
        return int(self.heartbeat.get("port", consts.HEARTBEAT_PORT))


@dataclass(frozen=True)
class ReplicatedVolume:
    name: str
    spec: dict[str, Any]

    @classmethod
    def from_body(cls, body: Any) -> ReplicatedVolume:
        return cls(body["metadata"]["name"], dict(body.get("spec") or {}))

    @property
    def size(self) -> str:
        return str(self.spec["size"])

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", 2))

    @property
    def protocol(self) -> str:
        return str(self.spec.get("protocol", "C"))

    @property
    def storage_class(self) -> str | None:
        return self.spec.get("storageClassName")

    @property
    def filesystem(self) -> dict[str, Any]:
        return dict(self.spec.get("filesystem") or {"type": "ext4", "fsck": True})

    @property
    def reclaim_policy(self) -> str:
        return str(self.spec.get("reclaimPolicy", "Retain"))


def check_volume_fits(cluster: HACluster, volume: ReplicatedVolume | None) -> None:
    ref = cluster.resource("volume")
    if ref is None:
        return
    if volume is None:
        raise SpecError(f"ReplicatedVolume {ref.name!r} (resources[kind=volume]) does not exist yet")
    if volume.replicas != cluster.replicas:
        raise SpecError(f"ReplicatedVolume {volume.name} has {volume.replicas} replicas but the HACluster has "
                        f"{cluster.replicas} members: they must be equal")
