"""Request latencies are kept as plain counts and exported as a Prometheus histogram and
counter: inclusive upper bounds, cumulative buckets, count = +Inf = requests, per op."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hastack_blockrepl.metrics import BUCKETS, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if "request" in s.name
    }


def test_latencies_export_cumulative_inclusive_buckets_per_op() -> None:
    m = Metrics("r0")
    for seconds in (0.00005, BUCKETS[0], 0.0003, 2.0, 9.0):  # one exactly on a bound, one above all
        m.latency("write", seconds)
    m.latency("flush", 0.001)
    got = samples(m)

    def bucket(op: str, le: str) -> float:
        return got[("hastack_blockrepl_request_seconds_bucket", (("le", le), ("op", op), ("resource", "r0")))]

    assert bucket("write", "0.0001") == 2  # le is inclusive
    assert bucket("write", "0.00025") == 2 and bucket("write", "0.0005") == 3
    assert bucket("write", "1.0") == 3 and bucket("write", "5.0") == 4 and bucket("write", "+Inf") == 5
    assert bucket("flush", "0.0005") == 0 and bucket("flush", "0.001") == 1
    labels = (("op", "write"), ("resource", "r0"))
    assert got[("hastack_blockrepl_request_seconds_count", labels)] == 5
    assert abs(got[("hastack_blockrepl_request_seconds_sum", labels)] - 11.00045) < 1e-9
    assert got[("hastack_blockrepl_requests_total", labels)] == 5
    assert got[("hastack_blockrepl_requests_total", (("op", "flush"), ("resource", "r0")))] == 1


def test_a_write_batch_counts_each_of_its_requests() -> None:
    """A batch of 7 writes answered at once is 7 requests of that latency, not one."""
    m = Metrics("r0")
    m.latency("write", 0.0003, 7)
    m.latency("write", 0.002)
    got = samples(m)
    labels = (("op", "write"), ("resource", "r0"))
    assert got[("hastack_blockrepl_request_seconds_bucket", (("le", "0.0005"), *labels))] == 7
    assert got[("hastack_blockrepl_request_seconds_count", labels)] == 8
    assert abs(got[("hastack_blockrepl_request_seconds_sum", labels)] - (7 * 0.0003 + 0.002)) < 1e-12
    assert got[("hastack_blockrepl_requests_total", labels)] == 8
