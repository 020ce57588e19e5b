"""mon's Prometheus metrics, blackbox_exporter style, under the project prefix.

One registry per process (tests run several mon instances in one interpreter).
Labels: ``namespace``, ``monitor`` (the ServiceMonitor), ``probe`` (its name), ``kind``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PROBE_LABELS = ("namespace", "monitor", "probe", "kind")
ALERT_STATES = ("ok", "pending", "alerting", "suppressed")
RELOAD_RESULTS = ("applied", "error")
PUBLISH_RESULTS = ("ok", "error")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.success = Gauge("hastack_probe_success", "1 if the last probe succeeded, else 0", PROBE_LABELS, registry=r)
        self.duration = Histogram(
            "hastack_probe_duration_seconds",
            "How long probes took, including failures and timeouts",
            PROBE_LABELS,
            buckets=BUCKETS,
            registry=r,
        )
        self.last_duration = Gauge(
            "hastack_probe_last_duration_seconds", "How long the last probe took", PROBE_LABELS, registry=r
        )
        self.failures = Counter("hastack_probe_failures", "Failed probes", PROBE_LABELS, registry=r)
        self.errors = Counter(
            "hastack_probe_errors",
            "Probes that raised internally (counted as failed probes too)",
            PROBE_LABELS,
            registry=r,
        )
        self.consecutive = Gauge(
            "hastack_probe_consecutive_failures", "Failures in a row of each probe", PROBE_LABELS, registry=r
        )
        self.alert_state = Gauge(
            "hastack_mon_alert_state",
            "1 for the alert state each probe is in (ok, pending, alerting, suppressed)",
            (*PROBE_LABELS, "state"),
            registry=r,
        )
        self.alerts = Counter(
            "hastack_mon_alerts",
            "Alert actions decided (alert, realert, upalert, resolve)",
            ("namespace", "monitor", "probe", "action"),
            registry=r,
        )
        self.deliveries = Counter(
            "hastack_mon_receiver_deliveries",
            "Alert deliveries that reached a receiver",
            ("namespace", "monitor", "receiver", "type"),
            registry=r,
        )
        self.delivery_failures = Counter(
            "hastack_mon_receiver_delivery_failures",
            "Failed delivery attempts to a receiver (each retry counts)",
            ("namespace", "monitor", "receiver", "type"),
            registry=r,
        )
        self.config_reloads = Counter(
            "hastack_mon_config_reloads", "Configuration reloads by result", ("result",), registry=r
        )
        self.status_publishes = Counter(
            "hastack_mon_status_publishes",
            "Writes of the monitor-status annotation on this pod, by result (ok, error)",
            ("result",),
            registry=r,
        )
        self.probes_configured = Gauge("hastack_mon_probes", "Probes configured in this process", registry=r)
        # exported at 0 from the start, so that increase() in an alert sees the first error
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result)
        for result in PUBLISH_RESULTS:
            self.status_publishes.labels(result)

    def set_alert_state(self, labels: tuple[str, ...], state: str) -> None:
        for s in ALERT_STATES:
            self.alert_state.labels(*labels, s).set(1 if s == state else 0)

    def forget(self, labels: tuple[str, ...]) -> None:
        """Drop a removed probe's series, so a deleted probe does not look down forever."""
        per_probe = (self.success, self.duration, self.last_duration)
        for metric in (*per_probe, self.failures, self.errors, self.consecutive):
            try:
                metric.remove(*labels)
            except KeyError:
                pass
        for s in ALERT_STATES:
            try:
                self.alert_state.remove(*labels, s)
            except KeyError:
                pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
