"""fsinit waits for answers that can settle: a Lease holder (day 0 has none yet) and blockrepl's
"never written anywhere" (unknown until every peer's identifiers were heard)."""

from __future__ import annotations

import pytest

from hastack_fsinit.decide import day0_known, exposed_device, holds_lease, lease_holder, never_written


@pytest.mark.parametrize(("status", "holder", "mine"), [
    ({"member": "web-0", "lease": None}, "", False),
    ({"member": "web-0", "lease": {"holder": ""}}, "", False),
    ({"member": "web-0", "lease": {"holder": "web-1"}}, "web-1", False),
    ({"member": "web-0", "lease": {"holder": "web-0"}}, "web-0", True),
])
def test_lease_holder(status: dict[str, object], holder: str, mine: bool) -> None:
    assert lease_holder(status) == holder
    assert holds_lease(status) is mine


@pytest.mark.parametrize(("status", "known", "blank"), [
    ({"day0": True, "day0_everywhere": None}, False, False),  # a peer not heard yet: ask again
    ({"day0": True, "day0_everywhere": True}, True, True),
    ({"day0": True, "day0_everywhere": False}, True, False),
    ({"day0": False}, True, False),  # an older blockrepl: answered from day0 and the links
])
def test_day0_known_before_never_written(status: dict[str, object], known: bool, blank: bool) -> None:
    assert day0_known(status) is known
    assert never_written(status) is blank


def test_exposed_device_from_heartbeat_status() -> None:
    assert exposed_device({"device": "/dev/loop7"}) == "/dev/loop7"
    assert exposed_device({"role": "promoting"}) == ""
