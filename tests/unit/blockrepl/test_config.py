"""The typed config: defaults, sizes and durations, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from hastack_common.config_blockrepl import (
    ConfigError,
    bitmap_bytes,
    metadata_bytes,
    parse,
    parse_size,
    render,
)


def base(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "nodeId": 0,
        "disk": {"path": "/dev/loop0"},
        "net": {"secretFile": "/etc/secret"},
        "peers": [{"nodeId": 1, "address": "10.0.0.2:7788"}],
        "handlers": {"fencePeer": ["/bin/true"]},
    }
    cfg.update(over)
    return cfg


def test_defaults_and_round_trip() -> None:
    cfg = parse(base(net={"secretFile": "/s", "pingInterval": "500ms", "maxBuffer": "16MiB"}, size="1GiB"))
    assert cfg.net.protocol == "C" and cfg.net.ping_interval == 0.5 and cfg.net.max_buffer == 16 << 20
    assert (
        cfg.size == 1 << 30
        and cfg.disk.metadata == "internal"
        and cfg.split_brain.after_sb_0pri == "disconnect"
    )
    assert parse(__import__("yaml").safe_load(render(cfg))) == cfg
    assert cfg.net.congestion_control == "cubic"  # the host's default may pace (docs/decisions.md)


@pytest.mark.parametrize(
    "over,field",
    [
        ({"net": {"secretFile": "/s", "protocol": "D"}}, "net.protocol"),
        ({"nodeId": -1}, "nodeId"),
        ({"splitBrain": {"afterSb0Pri": "discard-everything"}}, "splitBrain.afterSb0Pri"),
        ({"nbd": {"listen": "0.0.0.0:10809"}}, "nbd"),
        ({"peers": [{"nodeId": 0, "address": "x:1"}]}, "own nodeId"),
        ({"peers": [{"nodeId": 1, "address": "nohostport"}]}, "peers"),
        ({"net": {"secretFile": "/s", "pingInterval": "2s", "pingTimeout": "1s"}}, "pingTimeout"),
        ({"net": {"secretFile": "/s", "pingInterval": "fast"}}, "net.pingInterval"),
        ({"handlers": {}}, "fencePeer"),
        ({"sizeTypo": 3}, "sizeTypo"),
        ({"size": "12 parsecs"}, "size"),
        ({"net": {"secretFile": "/s", "congestionControl": "BBR v2"}}, "net.congestionControl"),
    ],
)
def test_bad_config_names_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(base(**over))
    assert field in str(exc.value)


def test_sizes_and_metadata_bytes() -> None:
    assert parse_size("4k") == 4096 and parse_size("2GiB") == 2 << 30 and parse_size(7) == 7
    assert bitmap_bytes(1 << 30) == 32 << 10
    assert metadata_bytes(1 << 30) == 1 << 20 and metadata_bytes(1 << 40) % (1 << 20) == 0
    assert metadata_bytes(1 << 40) >= 2 * (32 << 20)
