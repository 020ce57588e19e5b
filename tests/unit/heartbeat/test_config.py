"""The heartbeat configuration the operator renders: defaults, round trip, unsafe timings refused."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from hastack_common.config_heartbeat import HeartbeatConfig, Timing, check_timings, load

BASE = {"cluster": "web", "namespace": "prod", "members": ["web-0", "web-1"],
        "peerDomain": "web-peers.prod.svc.cluster.local", "leaseName": "web"}


def test_defaults_are_design_defaults_and_safe() -> None:
    cfg = HeartbeatConfig.model_validate(BASE)
    t = cfg.timing
    assert (t.keepalive, t.warn_time, t.dead_time) == ("500ms", "1500ms", "3s")
    assert (t.init_dead, t.port) == ("10s", 694)
    assert (t.lease_duration, t.renew_period, t.renew_deadline) == ("4s", "1s", "3s")
    assert check_timings(t) == []
    assert cfg.address_of("web-1") == "web-1.web-peers.prod.svc.cluster.local"


def test_round_trip_through_yaml_with_camel_case_names() -> None:
    cfg = HeartbeatConfig.model_validate({**BASE, "timing": {"keepalive": "200ms", "warnTime": "1s",
                                                             "deadTime": "2s", "initDead": "5s"}})
    text = yaml.safe_dump(cfg.model_dump(by_alias=True))
    assert "warnTime: 1s" in text and "deadTime: 2s" in text
    assert load(text) == cfg


@pytest.mark.parametrize(
    ("timing", "needle"),
    [
        ({"warnTime": "400ms"}, "keepalive < warnTime < deadTime"),
        ({"deadTime": "1s"}, "keepalive < warnTime < deadTime"),
        ({"keepalive": "900ms", "warnTime": "1s", "deadTime": "2s"}, "at least 3 keepalives"),
        ({"initDead": "2s"}, "initDead (2s) must be at least deadTime"),
        ({"renewPeriod": "3s"}, "renewPeriod < renewDeadline"),
        ({"leaseDuration": "4500ms"}, "whole number of seconds"),
        ({"renewDeadline": "3800ms"}, "must not exceed leaseDuration"),
        ({"safetyMargin": "1s", "renewDeadline": "3500ms"}, "must not exceed leaseDuration"),
        ({"safetyMargin": "0s"}, "safetyMargin must be greater than 0"),
        ({"keepalive": "1s", "warnTime": "2s", "deadTime": "3s", "safetyMargin": "2s", "leaseDuration": "6s"},
         "peer acknowledgements can never keep"),
        ({"keepalive": "fast"}, "invalid duration"),
    ],
)
def test_unsafe_timings_are_refused_naming_the_inequality(timing: dict[str, str], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        Timing.model_validate(timing)
    assert needle in str(err.value)


def test_members_are_checked() -> None:
    with pytest.raises(ValidationError, match="distinct"):
        HeartbeatConfig.model_validate({**BASE, "members": ["a", "a"]})
    with pytest.raises(ValidationError, match="preferredMember"):
        HeartbeatConfig.model_validate({**BASE, "failover": {"preferredMember": "web-9"}})
    with pytest.raises(ValidationError, match="extra"):
        HeartbeatConfig.model_validate({**BASE, "deadtime": "3s"})
