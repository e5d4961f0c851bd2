"""Prometheus metrics, held by a :class:`Metrics` object that is passed around, never a module global.

Each server builds its own :class:`prometheus_client.CollectorRegistry`, so two apps in one
process (tests, the demo) never share or double-register series. The API records request
latency here; the daemon adds its scan metrics to the same registry (``metrics.registry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: seconds; the label lookup answers in well under a millisecond, batches and listings take longer
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.request_seconds = Histogram(
            "envlabel_http_request_duration_seconds", "HTTP API request latency, by route and status",
            ("method", "route", "status"), buckets=LATENCY_BUCKETS, registry=self.registry)
        # labelled children, looked up once: .labels() takes a lock and builds a key every call
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.request_seconds.labels(method, route, str(status))
        child.observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        body: bytes = generate_latest(self.registry)
        return body


#: seconds; a scan takes from a second (one small account) to tens of minutes (an organization)
SCAN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


class ScanMetrics:
    """What the daemon reports on the same registry as the API: scans, the estate, findings, changes, webhooks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.scan_seconds = Histogram(
            "envlabel_scan_duration_seconds", "Scan plus commit time, by source and outcome "
            "(complete, partial, failed, error, abandoned)", ("source", "outcome"), buckets=SCAN_BUCKETS,
            registry=registry)
        self.scans = Counter("envlabel_scans", "Scans run, by source and outcome", ("source", "outcome"),
                             registry=registry)
        self.resources = Gauge("envlabel_resources", "Live resources, by provider and environment",
                               ("provider", "environment"), registry=registry)
        self.findings = Gauge("envlabel_findings", "Audit findings after the last scan, by kind and severity",
                              ("kind", "severity"), registry=registry)
        self.label_changes = Counter("envlabel_label_changes", "Labels written with history (new, changed "
                                     "evidence or environment, gone)", registry=registry)
        self.environment_changes = Counter("envlabel_environment_changes", "Labels whose environment changed",
                                           registry=registry)
        self.webhook_deliveries = Counter("envlabel_webhook_deliveries", "Webhook deliveries, by event and "
                                          "outcome (delivered, failed, dropped)", ("event", "outcome"),
                                          registry=registry)
        self._seen: dict[int, set[tuple[str, str]]] = {}

    def observe_scan(self, source: str, outcome: str, seconds: float) -> None:
        self.scan_seconds.labels(source, outcome).observe(seconds)
        self.scans.labels(source, outcome).inc()

    def set_resources(self, counts: Mapping[tuple[str, str], int]) -> None:
        self._set_all(self.resources, counts)

    def set_findings(self, counts: Mapping[tuple[str, str], int]) -> None:
        self._set_all(self.findings, counts)

    def _set_all(self, gauge: Gauge, values: Mapping[tuple[str, str], int]) -> None:
        """Set every series of ``gauge``; a series set before that has vanished reads 0, not its old count."""
        seen = self._seen.setdefault(id(gauge), set())
        for key in seen - set(values):
            gauge.labels(*key).set(0)
        for key, value in values.items():
            gauge.labels(*key).set(value)
        seen.update(values)
