"""Configuration reload (pure): which changes apply online and which wait for a restart.

DESIGN: sidecars reload on change, so that changing timings, the protocol, the sync rate or
the split-brain policies never rolls a pod. Identity and wiring (node id, resource, disk,
sockets, listen addresses, the set of peers) take effect only at the next start; the
running values are kept and the log says which fields wait.
"""

from __future__ import annotations

from dataclasses import dataclass

from hastack_common.config_blockrepl import BlockreplConfig

RESTART_FIELDS = ("resource", "node_id", "size", "disk", "nbd", "control_socket", "metrics")


@dataclass(frozen=True)
class ReloadPlan:
    config: BlockreplConfig  # what to run with now
    applied: list[str]  # changed fields that take effect now
    deferred: list[str]  # changed fields that wait for a restart
    reconnect: bool  # links must renegotiate (protocol changed)


def plan_reload(old: BlockreplConfig, new: BlockreplConfig) -> ReloadPlan:
    applied: list[str] = []
    deferred: list[str] = []
    keep = {}
    for name in BlockreplConfig.model_fields:
        if getattr(old, name) == getattr(new, name):
            continue
        if name in RESTART_FIELDS:
            deferred.append(name)
            keep[name] = getattr(old, name)
        elif name == "peers" and {p.node_id for p in old.peers} != {p.node_id for p in new.peers}:
            deferred.append("peers (added or removed)")
            keep[name] = old.peers
        else:
            applied.append(name)
    net = new.net
    if old.net.listen != new.net.listen:
        deferred.append("net.listen")
        net = net.model_copy(update={"listen": old.net.listen})
    keep["net"] = net
    merged = new.model_copy(update=keep)
    return ReloadPlan(merged, applied, deferred, old.net.protocol != merged.net.protocol)
