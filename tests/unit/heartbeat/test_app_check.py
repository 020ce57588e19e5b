"""The monitor operation's app check through the gates' acknowledgements (pure)."""

from __future__ import annotations

import pytest

from hastack_common.state_file import GateAck, apps_down


def ack(gen: int, running: bool, code: int | None, at: float, name: str = "app") -> GateAck:
    return GateAck(name=name, generation=gen, running=running, exitCode=code, at=at, reason="r")


@pytest.mark.parametrize(("a", "down"), [
    (ack(10, False, 3, 80.0), True),  # exited while serving, down 20 s
    (ack(10, False, 3, 90.0), False),  # down 10 s only: the kubelet may still restart it
    (ack(9, False, 143, 50.0), False),  # stopped before this serving period began (a demotion)
    (ack(11, True, None, 50.0), False),  # running again
    (ack(11, False, None, 50.0), False),  # never started yet (no exit code)
])
def test_an_app_is_down_only_when_it_exited_while_serving_and_stayed_down(a: GateAck, down: bool) -> None:
    got = apps_down({a.name: a}, since_generation=10, now=100.0, after=15.0)
    assert bool(got) is down
    if down:
        assert got == ["app app exited 3 (r) 20s ago and has not run since"]


def test_a_gate_whose_app_exited_counts_as_stopped_only_when_the_caller_says_it_waited() -> None:
    from hastack_common.state_file import all_stopped

    acks = {"app": ack(10, False, 3, 80.0), "side": ack(12, False, None, 90.0, name="side")}
    assert not all_stopped(acks, 12)
    assert all_stopped(acks, 12, exited_count=True)
    acks["app"] = ack(11, True, None, 95.0)  # restarted and running: never stopped
    assert not all_stopped(acks, 12, exited_count=True)
