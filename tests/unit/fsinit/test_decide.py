"""DESIGN's "Who formats" as a table: format only when every gate is open."""

from __future__ import annotations

import itertools

import pytest

from hastack_fsinit.decide import Action, Facts, decide, mkfs_argv

KERNEL = frozenset({"ext4", "xfs", "btrfs"})


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {"fs_type": "ext4", "kernel_filesystems": KERNEL, "holds_lease": True,
                               "never_written": True, "signatures": (), "device": "/dev/loop7"}
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_formats_only_when_all_gates_open() -> None:
    assert decide(facts()).action is Action.FORMAT
    gates = {"holds_lease": [True, False, None], "never_written": [True, False, None],
             "signatures": [(), ("ext4@0x438",), None]}
    for values in itertools.product(*gates.values()):
        kw = dict(zip(gates, values, strict=True))
        expected = Action.FORMAT if values == (True, True, ()) else Action.SKIP
        assert decide(facts(**kw)).action is expected, kw


@pytest.mark.parametrize(("kw", "reason"), [
    ({"holds_lease": False}, "standby"),
    ({"never_written": False}, "written before"),
    ({"signatures": ("LVM2_member@0x218",)}, "carries a signature (LVM2_member@0x218)"),
    ({"signatures": None}, "no exposed device"),
])
def test_skip_reasons_explain(kw: dict[str, object], reason: str) -> None:
    d = decide(facts(**kw))
    assert d.action is Action.SKIP and reason in d.reason


def test_refusals() -> None:
    d = decide(facts(fs_type="reiserfs"))
    assert d.action is Action.REFUSE and "not supported by this node's kernel" in d.reason
    d = decide(facts(missing_tools=("mkfs.btrfs",)))
    assert d.action is Action.REFUSE and "mkfs.btrfs" in d.reason
    # a refusal wins even when this member would otherwise skip
    assert decide(facts(fs_type="reiserfs", holds_lease=False)).action is Action.REFUSE


def test_mkfs_never_forces() -> None:
    assert mkfs_argv("ext4", "/dev/x", ("-E", "lazy_itable_init=0")) == [
        "mkfs.ext4", "-q", "-E", "lazy_itable_init=0", "/dev/x"]
    assert mkfs_argv("xfs", "/dev/x", label="a-very-long-label")[1:3] == ["-L", "a-very-long-"]
    for flag in ("-F", "-f", "--force"):
        with pytest.raises(ValueError, match="never forces mkfs"):
            mkfs_argv("xfs", "/dev/x", (flag,))


def test_contract_with_heartbeat_and_blockrepl_status() -> None:
    from hastack_fsinit.decide import exposed_device, holds_lease, never_written

    hb = {"member": "web-0", "role": "active", "lease": {"holder": "web-0"}}
    assert holds_lease(hb) and not holds_lease({**hb, "lease": {"holder": "web-1"}})
    assert not holds_lease({"member": "", "lease": {"holder": ""}})
    assert exposed_device({**hb, "device": "/dev/loop3"}) == "/dev/loop3"
    assert exposed_device({**hb, "volume": {"device": "/dev/nbd0"}}) == "/dev/nbd0"
    assert exposed_device(hb) == ""
    peer = {"connection": "Connected", "replication": "Established"}
    assert never_written({"day0": True, "peers": [peer, peer]})
    assert not never_written({"day0": False, "peers": [peer]})
    assert not never_written({"day0": True, "peers": [peer, {**peer, "connection": "Connecting"}]})
    assert not never_written({"day0": True, "peers": [{**peer, "replication": "SyncTarget"}]})
    assert never_written({"day0": True, "day0_everywhere": True, "peers": []})
    assert not never_written({"day0": True, "day0_everywhere": None})  # a peer's identifiers unknown
    assert not never_written({"day0": True, "day0_everywhere": False, "peers": [peer]})
