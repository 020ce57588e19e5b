"""Which config changes apply online and which wait for a restart."""

from __future__ import annotations

from typing import Any

from hastack_blockrepl.reload import plan_reload
from hastack_common.config_blockrepl import parse


def cfg(**over: Any) -> Any:
    raw: dict[str, Any] = {
        "nodeId": 0, "disk": {"path": "/dev/loop0"}, "fencing": "dont-care",
        "net": {"secretFile": "/s", "protocol": "C"}, "peers": [{"nodeId": 1, "address": "a:1"}],
    }  # fmt: skip
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return parse(raw)


def test_online_changes_apply_and_identity_waits() -> None:
    old = cfg()
    new = cfg(net={"protocol": "A", "pingTimeout": "10s", "listen": "0.0.0.0:9999"}, sync={"rate": "5MiB"},
              disk={"path": "/dev/loop9"}, splitBrain={"afterSb0Pri": "discard-least-changes"})  # fmt: skip
    plan = plan_reload(old, new)
    assert plan.reconnect
    assert set(plan.applied) == {"net", "sync", "split_brain"}
    assert set(plan.deferred) == {"disk", "net.listen"}
    c = plan.config
    assert c.disk.path == "/dev/loop0" and c.net.listen == old.net.listen
    assert c.net.protocol == "A" and c.net.ping_timeout == 10 and c.sync.rate == 5 << 20
    assert c.split_brain.after_sb_0pri == "discard-least-changes"


def test_peer_address_changes_online_but_membership_waits() -> None:
    old = cfg()
    moved = plan_reload(old, cfg(peers=[{"nodeId": 1, "address": "b:2"}]))
    assert moved.applied == ["peers"] and moved.config.peers[0].address == "b:2" and not moved.reconnect
    grown = plan_reload(old, cfg(peers=[{"nodeId": 1, "address": "a:1"}, {"nodeId": 2, "address": "c:3"}]))
    assert grown.deferred == ["peers (added or removed)"] and len(grown.config.peers) == 1


def test_no_change_no_plan() -> None:
    plan = plan_reload(cfg(), cfg())
    assert plan.applied == [] and plan.deferred == [] and not plan.reconnect
