"""Each probe kind against real servers on loopback (mon_targets, dnsmasq), in-process Prober."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.mon_env import Certs, Targets, dnsmasq, pause, resume, wait_for
from harness.procs import Supervisor
from hastack_common.config_mon import Probe, Target
from hastack_mon.probes import Prober, Result


def probe(spec: dict[str, Any], target: Target, timeout: float = 2.0) -> Result:
    async def go() -> Result:
        prober = Prober()
        try:
            return await prober.run(Probe.model_validate({"name": "p", **spec}), target, "default", timeout)
        finally:
            await prober.close()

    return asyncio.run(go())


def local(port: int | None = None) -> Target:
    return Target(host="127.0.0.1", port=port)


def test_tcp(targets: Targets) -> None:
    t = local(targets.ports["tcp"])
    assert probe({"tcp": {}}, t).ok
    assert probe({"tcp": {"send": "ping\n", "expect": "^hello\\s+ping"}}, t).ok
    r = probe({"tcp": {"send": "ping\n", "expect": "pong"}}, t, timeout=0.5)
    assert not r.ok and "timeout" in r.detail
    targets.stop()
    r = probe({"tcp": {}}, t)
    assert not r.ok and "refused" in r.detail.lower()


def test_http(targets: Targets) -> None:
    t = local(targets.ports["http"])
    assert probe({"http": {"path": "/health", "bodyRegex": "^heal"}}, t).detail == "HTTP 200"
    r = probe({"http": {"path": "/health", "bodyRegex": "sick"}}, t)
    assert not r.ok and "does not match" in r.detail
    targets.set_health(503, "down")
    r = probe({"http": {"path": "/health"}}, t)
    assert not r.ok and "HTTP 503" in r.detail and "expected 200-399" in r.detail
    assert probe({"http": {"path": "/health", "expectStatus": [503]}}, t).ok
    assert probe({"http": {"path": "/nope", "expectStatus": [404]}}, t).ok
    assert probe(
        {
            "http": {
                "method": "POST",
                "path": "/admin/health",
                "body": '{"status": 200}',
                "headers": {"Content-Type": "application/json"},
            }
        },
        t,
    ).ok
    assert probe({"http": {"path": "/redirect"}}, t).ok  # followed to /health, now 200 again
    r = probe({"http": {"path": "/redirect", "followRedirects": False, "expectStatus": [200]}}, t)
    assert not r.ok and "HTTP 302" in r.detail
    assert probe({"http": {"path": "/redirect", "followRedirects": False, "expectStatus": [302]}}, t).ok


def test_https_verification_and_client_certificates(targets: Targets, certs: Certs) -> None:
    t = local(targets.ports["https"])
    r = probe({"https": {"path": "/health"}}, t)
    assert not r.ok and "CERTIFICATE_VERIFY_FAILED" in r.detail
    assert probe({"https": {"path": "/health", "caFile": certs.ca}}, t).ok
    assert probe({"https": {"path": "/health", "insecureSkipVerify": True}}, t).ok
    m = local(targets.ports["mtls"])
    assert not probe({"https": {"path": "/health", "caFile": certs.ca}}, m).ok
    ok: dict[str, Any] = {
        "path": "/health",
        "caFile": certs.ca,
        "clientCertFile": certs.client_cert,
        "clientKeyFile": certs.client_key,
    }
    assert probe({"https": ok}, m).ok


def test_hung_and_slow_loris_targets_cost_one_timeout_and_stall_nothing(targets: Targets) -> None:
    async def go() -> tuple[list[Result], bool, float]:
        prober = Prober()
        specs: list[tuple[dict[str, Any], Target]] = [
            ({"tcp": {"send": "x", "expect": "y"}}, local(targets.ports["hang"])),
            ({"http": {}}, local(targets.ports["hang"])),
            ({"http": {"path": "/slow", "bodyRegex": "never"}}, local(targets.ports["http"])),
        ]
        start = time.monotonic()
        slow = [
            asyncio.create_task(prober.run(Probe.model_validate({"name": "p", **s}), t, "d", 3.0)) for s, t in specs
        ]
        fast_probe = Probe.model_validate({"name": "f", "http": {"path": "/health"}})
        fast = [await prober.run(fast_probe, local(targets.ports["http"]), "d", 5) for _ in range(10)]
        hung_still_pending = not any(t.done() for t in slow)
        results = await asyncio.gather(*slow)
        await prober.close()
        assert all(r.ok for r in fast)
        return results, hung_still_pending, time.monotonic() - start

    results, fast_first, total = asyncio.run(go())
    assert [r.ok for r in results] == [False, False, False]
    assert all("timeout after 3s" in r.detail for r in results), results
    assert fast_first, "fast probes waited for the hung ones"
    assert 2.9 < total < 10  # each hung probe cost its own timeout, once


def test_paused_server_is_a_timeout_then_recovers(targets: Targets) -> None:
    assert targets.proc is not None
    pause(targets.proc)
    r = probe({"http": {"path": "/health"}}, local(targets.ports["http"]), timeout=0.5)
    assert not r.ok and "timeout" in r.detail
    resume(targets.proc)
    assert probe({"http": {"path": "/health"}}, local(targets.ports["http"])).ok


@pytest.fixture
def dns_server(sup: Supervisor) -> Iterator[int]:
    proc, port = dnsmasq(
        sup,
        [
            "--local=/hastack.test/",  # authoritative: unknown names are NXDOMAIN
            "--address=/web.hastack.test/10.1.2.3",
            "--host-record=db.hastack.test,10.1.2.4,fd00::4",
            "--mx-host=hastack.test,mail.hastack.test,10",
            "--txt-record=hastack.test,v=spf1 -all",
            "--cname=www.hastack.test,web.hastack.test",
            "--srv-host=_http._tcp.hastack.test,web.hastack.test,80,1,5",
        ],
    )
    try:
        wait_for(
            lambda: (
                probe({"dns": {"name": "web.hastack.test", "server": f"127.0.0.1:{port}"}}, local(), timeout=0.5).ok
            ),
            10,
            "dnsmasq answering",
        )
        yield port
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("name", "rtype", "expect"),
    [
        ("web.hastack.test", "A", ["10.1.2.3"]),
        ("db.hastack.test", "AAAA", ["fd00::4"]),
        ("hastack.test", "MX", ["10 mail.hastack.test."]),
        ("hastack.test", "TXT", ["v=spf1 -all"]),
        ("www.hastack.test", "CNAME", ["web.hastack.test"]),
        ("_http._tcp.hastack.test", "SRV", ["1 5 80 web.hastack.test."]),
    ],
)
def test_dns_answers(dns_server: int, name: str, rtype: str, expect: list[str]) -> None:
    r = probe(
        {"dns": {"name": name, "recordType": rtype, "expect": expect, "server": f"127.0.0.1:{dns_server}"}},
        local(),
    )
    assert r.ok, r.detail


def test_dns_failures(dns_server: int) -> None:
    server = f"127.0.0.1:{dns_server}"
    r = probe({"dns": {"name": "web.hastack.test", "expect": ["10.9.9.9"], "server": server}}, local())
    assert not r.ok and "expected 10.9.9.9; got 10.1.2.3" in r.detail
    r = probe({"dns": {"name": "missing.hastack.test", "server": server}}, local())
    assert not r.ok and "NXDOMAIN" in r.detail
    assert probe({"dns": {"name": "missing.hastack.test", "rcode": "NXDOMAIN", "server": server}}, local()).ok


def test_tls_days_left(targets: Targets, certs: Certs, tmp_path: pathlib.Path) -> None:
    t = local(targets.ports["https"])
    r = probe({"tls": {"caFile": certs.ca}}, t)
    assert r.ok and 19.9 < float(r.detail.split()[3]) <= 20, r.detail  # "certificate valid for N more days"
    r = probe({"tls": {"caFile": certs.ca, "minDaysLeft": 25}}, t)
    assert not r.ok and "expires in 20.0 days (< 25)" in r.detail
    assert not probe({"tls": {}}, t).ok  # unknown CA
    assert probe({"tls": {"insecureSkipVerify": True}}, t).ok


def test_exec(tmp_path: pathlib.Path) -> None:
    assert probe({"exec": {"command": ["sh", "-c", "echo ready"], "expectOutput": "^ready$"}}, local()).ok
    r = probe({"exec": {"command": ["sh", "-c", "echo broken; exit 3"]}}, local())
    assert not r.ok and "exited 3, expected 0: broken" in r.detail
    assert probe({"exec": {"command": ["sh", "-c", "exit 3"], "expectExitCode": 3}}, local()).ok
    r = probe({"exec": {"command": ["/nonexistent/probe"]}}, local())
    assert not r.ok and "FileNotFoundError" in r.detail
    marker = tmp_path / "child.pid"
    r = probe({"exec": {"command": ["sh", "-c", f"sleep 30 & echo $! > {marker}; wait"]}}, local(), timeout=0.5)
    assert not r.ok and "timeout" in r.detail
    child = int(wait_for(lambda: marker.read_text().strip(), 5, "child pid"))
    wait_for(
        lambda: (
            not pathlib.Path(f"/proc/{child}").exists()
            or "Z" in pathlib.Path(f"/proc/{child}/stat").read_text().split()[2]
        ),
        5,
        "the probe's child killed",
    )


def test_a_probe_that_raises_is_a_failed_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: Any) -> str:
        raise RuntimeError("bug in a probe")

    monkeypatch.setattr(Prober, "_dispatch", broken)  # test-only: a probe with a bug
    r = probe({"tcp": {}}, local(1))
    assert not r.ok and r.error and "RuntimeError: bug in a probe" in r.detail
