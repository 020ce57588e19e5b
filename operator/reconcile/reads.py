"""What the reconcilers read, from the API server or from the operator's watch indexes.

A reconcile reads the HACluster's volume, monitors, member pods, StatefulSet and claims. Read
from the API server that is ~10 requests per run, some of them lists of the whole namespace
(O(N) per run, O(N²) for N clusters). The operator already watches these kinds, so its
indexes hold the same objects, as fresh as the watch: :class:`IndexReads` answers from them.

Rules that keep indexed reads safe:

- a single object missing from its index is read from the API server (the watch may not have
  delivered a just-created object yet: a miss is never taken as "does not exist");
- lists (pods, claims, monitors, users of a volume) come from the index as they are: a change
  the index has not seen yet arrives as a watch event, and that event triggers a new run;
- decisions that delete or fence (rolling update, lost nodes) are re-read from the API server
  before they are carried out (see :mod:`hastack_operator.reconcile.status_only`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from hastack_common import consts
from hastack_operator.k8s import Kube

Obj = dict[str, Any]
Index = Mapping[Any, Iterable[Any]]


class Reads(Protocol):
    fresh: bool  # True: straight from the API server (safe to act on)

    def cluster(self, namespace: str, name: str) -> Obj | None: ...
    def clusters_using(self, namespace: str, volume: str) -> list[Obj]: ...
    def volume(self, namespace: str, name: str) -> Obj | None: ...
    def monitors(self, namespace: str, cluster: str) -> list[Obj]: ...
    def pods(self, namespace: str, cluster: str) -> list[Obj]: ...
    def statefulset(self, namespace: str, name: str) -> Obj | None: ...
    def claims(self, namespace: str, cluster: str) -> list[Obj]: ...
    def node(self, name: str) -> Obj | None: ...


def uses_volume(cluster: Obj, volume: str) -> bool:
    return any(r.get("kind") == "volume" and r.get("name") == volume
               for r in (cluster.get("spec") or {}).get("resources") or [])


def targets_cluster(monitor: Obj, cluster: str) -> bool:
    return bool(((monitor.get("spec") or {}).get("target") or {}).get("haCluster") == cluster
                and not monitor["metadata"].get("deletionTimestamp"))


def by_name(items: Iterable[Obj]) -> list[Obj]:
    return sorted(items, key=lambda o: o["metadata"]["name"])


class ApiReads:
    """Every read a request to the API server (tests, and handlers without indexes)."""

    fresh = True

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def cluster(self, namespace: str, name: str) -> Obj | None:
        return self.kube.get(consts.API_VERSION, "HACluster", namespace, name)

    def clusters_using(self, namespace: str, volume: str) -> list[Obj]:
        return by_name(c for c in self.kube.list(consts.API_VERSION, "HACluster", namespace)
                       if uses_volume(c, volume))

    def volume(self, namespace: str, name: str) -> Obj | None:
        return self.kube.get(consts.API_VERSION, "ReplicatedVolume", namespace, name)

    def monitors(self, namespace: str, cluster: str) -> list[Obj]:
        return by_name(m for m in self.kube.list(consts.API_VERSION, "ServiceMonitor", namespace)
                       if targets_cluster(m, cluster))

    def pods(self, namespace: str, cluster: str) -> list[Obj]:
        return self.kube.list("v1", "Pod", namespace, f"{consts.LABEL_CLUSTER}={cluster}")

    def statefulset(self, namespace: str, name: str) -> Obj | None:
        return self.kube.get("apps/v1", "StatefulSet", namespace, name)

    def claims(self, namespace: str, cluster: str) -> list[Obj]:
        return self.kube.list("v1", "PersistentVolumeClaim", namespace, f"{consts.LABEL_CLUSTER}={cluster}")

    def node(self, name: str) -> Obj | None:
        return self.kube.get("v1", "Node", None, name)


class IndexReads:
    """Reads from the operator's indexes (see :mod:`hastack_operator.handlers.indexes`); an index
    that is absent (None) falls back to the API server, and so does a single-object miss."""

    fresh = False

    def __init__(self, kube: Kube, indexes: Mapping[str, Index | None]) -> None:
        self.api = ApiReads(kube)
        self.ix = indexes

    def _all(self, index: str, key: tuple[str, str]) -> list[Obj] | None:
        ix = self.ix.get(index)
        if ix is None:
            return None
        return [dict(o) for o in ix.get(key, ())]

    def _one(self, index: str, key: tuple[str, str]) -> Obj | None:
        """The object; None when the index is absent or does not hold it (then ask the API)."""
        found = self._all(index, key)
        return found[0] if found else None

    def cluster(self, namespace: str, name: str) -> Obj | None:
        return self._one("clusters_by_name", (namespace, name)) or self.api.cluster(namespace, name)

    def clusters_using(self, namespace: str, volume: str) -> list[Obj]:
        found = self._all("clusters_by_volume", (namespace, volume))
        return by_name(found) if found is not None else self.api.clusters_using(namespace, volume)

    def volume(self, namespace: str, name: str) -> Obj | None:
        return self._one("volumes_by_name", (namespace, name)) or self.api.volume(namespace, name)

    def monitors(self, namespace: str, cluster: str) -> list[Obj]:
        found = self._all("monitors_by_cluster", (namespace, cluster))
        if found is None:
            return self.api.monitors(namespace, cluster)
        return by_name(m for m in found if targets_cluster(m, cluster))

    def pods(self, namespace: str, cluster: str) -> list[Obj]:
        found = self._all("members_by_cluster", (namespace, cluster))
        return by_name(found) if found is not None else self.api.pods(namespace, cluster)

    def statefulset(self, namespace: str, name: str) -> Obj | None:
        return self._one("statefulsets_by_name", (namespace, name)) or self.api.statefulset(namespace, name)

    def claims(self, namespace: str, cluster: str) -> list[Obj]:
        found = self._all("claims_by_cluster", (namespace, cluster))
        return by_name(found) if found is not None else self.api.claims(namespace, cluster)

    def node(self, name: str) -> Obj | None:
        return self._one("nodes_by_name", ("", name)) or self.api.node(name)
