"""Prometheus metrics, held by a :class:`Metrics` object that is passed around, never a module global.

Each server builds its own :class:`prometheus_client.CollectorRegistry`, so two apps in one
process (tests, the demo) never share or double-register series. The API records request
latency here; the daemon adds its scan metrics to the same registry (``metrics.registry``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
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
