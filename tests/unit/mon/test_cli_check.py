"""`hastack mon --check FILE`: a configuration is validated before it is deployed."""

from __future__ import annotations

import pathlib

import pytest

from hastack_mon.__main__ import main


def test_valid_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "mon.yaml"
    f.write_text(
        "monitors:\n"
        "- name: web\n"
        "  namespace: shop\n"
        "  spec:\n"
        "    target: {host: 127.0.0.1, port: 80}\n"
        "    probes: [{name: health, type: http, interval: 5s}]\n"
        "    receivers: [{name: hook, type: webhook, url: 'http://x/'}]\n"
    )
    assert main(["--check", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "shop/web: probes health (http every 5s); receivers hook (webhook)" in out
    assert "ok: 1 monitor(s), 1 probe(s)" in out


def test_invalid_file_names_every_bad_field(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "mon.yaml"
    f.write_text("monitors:\n- name: web\n  spec:\n    target: {host: h}\n    probes: [{name: p, interval: soon}]\n")
    assert main(["--check", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}: invalid mon configuration" in err
    assert "monitors.0.spec.probes.0.interval" in err and "invalid duration 'soon'" in err
    assert main(["--check", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read mon configuration" in capsys.readouterr().err
    f.write_text("monitors: [unclosed\n")
    assert main(["--check", "--config", str(f)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
