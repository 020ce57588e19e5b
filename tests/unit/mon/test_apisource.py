from __future__ import annotations

from typing import Any

from hastack_mon.apisource import monitors_from_items


def item(name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", **meta}, "spec": spec}


GOOD = {"target": {"host": "h", "port": 80}, "probes": [{"name": "p", "type": "tcp"}]}


def test_usable_objects_become_monitors_and_bad_ones_are_explained() -> None:
    items = [
        item("b", GOOD),
        item("a", GOOD),
        item("bad", {"target": {"host": "h"}, "probes": []}),
        item("gone", GOOD, deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    good, errors = monitors_from_items(items)
    assert [(m.namespace, m.name, m.uid) for m in good] == [("ns", "a", "uid-a"), ("ns", "b", "uid-b")]
    assert list(errors) == ["ns/bad"] and "probes" in errors["ns/bad"] and "at least 1" in errors["ns/bad"]
