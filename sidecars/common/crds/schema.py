"""A tiny builder for structural OpenAPI v3 schemas with CEL rules.

The CRDs in ``crds/`` are generated from the definitions in this package (one source of
truth); ``tests/unit/common/test_crds.py`` fails when the committed YAML is stale.
Every builder takes the field's description first: ``kubectl explain`` shows it.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# Go-style durations, as Kubernetes and CEL's duration() accept them: "500ms", "1m30s".
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def rule(expr: str, message: str, *, reason: str | None = None, field_path: str | None = None) -> Schema:
    r: Schema = {"rule": expr, "message": message}
    if reason:
        r["reason"] = reason
    if field_path:
        r["fieldPath"] = field_path
    return r


def _base(kind: str, description: str, default: Any, rules: list[Schema] | None) -> Schema:
    s: Schema = {"type": kind, "description": description}
    if default is not None:
        s["default"] = default
    if rules:
        s["x-kubernetes-validations"] = rules
    return s


def string(description: str, *, default: str | None = None, enum: list[str] | None = None,
           pattern: str | None = None, max_length: int = 253, min_length: int | None = None,
           rules: list[Schema] | None = None) -> Schema:
    s = _base("string", description, default, rules)
    if enum:
        s["enum"] = enum
        s.pop("maxLength", None)
    else:
        s["maxLength"] = max_length
    if pattern:
        s["pattern"] = pattern
    if min_length is not None:
        s["minLength"] = min_length
    return s


def duration(description: str, *, default: str | None = None, rules: list[Schema] | None = None) -> Schema:
    return string(description + ' A duration such as "500ms", "3s" or "1m30s".',
                  default=default, pattern=DURATION_PATTERN, max_length=32, rules=rules)


def quantity(description: str, *, default: str | None = None, rules: list[Schema] | None = None) -> Schema:
    checks = [rule("isQuantity(self)", "must be a quantity such as 10Gi or 500Mi")]
    return string(description, default=default, max_length=64, rules=checks + (rules or []))


def integer(description: str, *, default: int | None = None, minimum: int | None = None,
            maximum: int | None = None, rules: list[Schema] | None = None) -> Schema:
    s = _base("integer", description, default, rules)
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    return s


def boolean(description: str, *, default: bool | None = None) -> Schema:
    return _base("boolean", description, default, None)


def obj(description: str, properties: dict[str, Schema], *, required: list[str] | None = None,
        default: Any = None, rules: list[Schema] | None = None, preserve_unknown: bool = False) -> Schema:
    if default == {}:
        # The API server checks a default against the object's CEL rules as written, without
        # applying the children's defaults first: spell them out.
        default = {k: v["default"] for k, v in properties.items() if "default" in v}
    s = _base("object", description, default, rules)
    s["properties"] = properties
    if required:
        s["required"] = required
    if preserve_unknown:
        s["x-kubernetes-preserve-unknown-fields"] = True
    return s


def free_object(description: str) -> Schema:
    """An object whose fields Kubernetes itself validates later (e.g. parts of a pod template)."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def string_map(description: str, *, max_properties: int = 64) -> Schema:
    return {"type": "object", "description": description, "maxProperties": max_properties,
            "additionalProperties": {"type": "string", "maxLength": 4096}}


def array(description: str, items: Schema, *, max_items: int, min_items: int | None = None,
          default: list[Any] | None = None, map_keys: list[str] | None = None,
          set_list: bool = False, rules: list[Schema] | None = None) -> Schema:
    s = _base("array", description, default, rules)
    s["items"] = items
    s["maxItems"] = max_items
    if min_items is not None:
        s["minItems"] = min_items
    if map_keys:
        s["x-kubernetes-list-type"] = "map"
        s["x-kubernetes-list-map-keys"] = map_keys
    elif set_list:
        s["x-kubernetes-list-type"] = "set"
    return s


def string_list(description: str, *, max_items: int = 64, max_length: int = 4096) -> Schema:
    return array(description, {"type": "string", "maxLength": max_length}, max_items=max_items)


def conditions() -> Schema:
    """metav1.Condition, as every Kubernetes controller reports them."""
    cond = obj("A condition of the object, in the Kubernetes convention.", {
        "type": string("Condition type: Accepted, Ready, Degraded, FailoverInProgress, SplitBrain, ...",
                       max_length=316),
        "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "observedGeneration": integer("The .metadata.generation the condition was set for.", minimum=0),
        "lastTransitionTime": {"type": "string", "format": "date-time",
                               "description": "When the condition last changed status."},
        "reason": string("A CamelCase reason for the last transition.", max_length=1024),
        "message": string("A human-readable message about the transition.", max_length=32768),
    }, required=["type", "status", "lastTransitionTime", "reason", "message"])
    return array("Latest observations of the object's state.", cond, max_items=32, map_keys=["type"])


def crd(*, group: str, version: str, kind: str, plural: str, short_names: list[str], spec: Schema,
        status: Schema, printer_columns: list[Schema], description: str) -> Schema:
    root = obj(description, {
        "apiVersion": {"type": "string", "description": "APIVersion of the object (hastack.io/v1alpha1)."},
        "kind": {"type": "string", "description": f"Kind of the object ({kind})."},
        "metadata": {"type": "object"},
        "spec": spec,
        "status": status,
    }, required=["spec"])
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/part-of": "hastack"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": short_names, "categories": ["hastack"]},
            "versions": [{
                "name": version, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer_columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def column(name: str, json_path: str, *, kind: str = "string", description: str = "",
           priority: int = 0) -> Schema:
    c: Schema = {"name": name, "type": kind, "jsonPath": json_path}
    if description:
        c["description"] = description
    if priority:
        c["priority"] = priority
    return c


AGE = column("Age", ".metadata.creationTimestamp", kind="date")
