"""The operator's one door to the API server: a thin, typed wrapper over the REST API.

Objects are plain dicts (what the builders produce). Writes are server-side apply with
one field manager; reads return dicts; errors are :class:`ApiError` with the status code.
Blocking calls: kopf runs sync handlers in its thread pool, never on its event loop.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from hastack_common import consts

# kind -> (plural, namespaced) for every kind the operator reads or writes
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Node"): ("nodes", False),
    ("v1", "PersistentVolume"): ("persistentvolumes", False),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    (consts.API_VERSION, "HACluster"): (consts.HACLUSTERS, True),
    (consts.API_VERSION, "ReplicatedVolume"): (consts.REPLICATEDVOLUMES, True),
    (consts.API_VERSION, "ServiceMonitor"): (consts.SERVICEMONITORS, True),
}


METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status


def path(api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
    plural, namespaced = KINDS[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class Kube:
    def __init__(self, api: ApiClient, field_manager: str = consts.FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager

    def _call(self, method: str, url: str, body: Any = None, query: dict[str, Any] | None = None,
              content_type: str = "application/json", accept: str = "application/json") -> Any:
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        m, full, headers, data, _ = self.api.param_serialize(
            method=method, resource_path=url, header_params={"Content-Type": content_type, "Accept": accept},
            body=body, auth_settings=["BearerToken"])
        try:
            resp = self.api.call_api(m, full, header_params=headers, body=data, _request_timeout=(5, 30))
            resp.read()
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or "", str(exc.body or "")) from None
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason or "", (resp.data or b"").decode(errors="replace"))
        return json.loads(resp.data) if resp.data else None

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply; returns the object's metadata only (a PartialObjectMetadata): the
        server need not serialize, nor the operator parse, a whole StatefulSet it does not read."""
        meta = obj["metadata"]
        url = path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        out: dict[str, Any] = self._call("PATCH", url, obj, {"fieldManager": self.field_manager,
                                                             "force": "true" if force else None},
                                         content_type="application/apply-patch+yaml", accept=METADATA_ONLY)
        return out

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        out: dict[str, Any] = self._call("POST", path(obj["apiVersion"], obj["kind"], meta.get("namespace")), obj,
                                         {"fieldManager": self.field_manager})
        return out

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self._call("GET", path(api_version, kind, namespace, name))
            return out
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        out = self._call("GET", path(api_version, kind, namespace), query={"labelSelector": label_selector})
        return list(out.get("items") or [])

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, body: dict[str, Any],
              subresource: str = "") -> dict[str, Any]:
        url = path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        out: dict[str, Any] = self._call("PATCH", url, body, content_type="application/merge-patch+json")
        return out

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
               grace_seconds: int | None = None, uid: str | None = None) -> bool:
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", path(api_version, kind, namespace, name), body)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
