"""Checks of a spec that the CRD's schema and CEL rules cannot express (pure)."""

from __future__ import annotations

from typing import Any

from hastack_common import consts


def spec_problems(plural: str, spec: dict[str, Any], name: str) -> list[str]:
    if plural == consts.HACLUSTERS:
        return _hacluster(spec)
    if plural == consts.SERVICEMONITORS:
        return _servicemonitor(spec, name)
    return []


def _hacluster(spec: dict[str, Any]) -> list[str]:
    problems = []
    preferred = (spec.get("failover") or {}).get("preferredMember")
    replicas = spec.get("replicas", 2)
    if preferred is not None and preferred >= replicas:
        problems.append(f"failover.preferredMember {preferred} is not a member (replicas: {replicas})")
    return problems


def _servicemonitor(spec: dict[str, Any], name: str) -> list[str]:
    depends = (spec.get("alert") or {}).get("dependsOn") or []
    return [f"alert.dependsOn names the monitor itself ({name})"] if name in depends else []
