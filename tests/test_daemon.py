"""The daemon: schedule plans on fake time, the scan job's guarantees in process, and ``envlabel serve`` as
a real subprocess against moto (through a proxy that can hold requests) and the fake Kubernetes API."""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
import yaml

from envlabel.config import Config, Source, config_from_dict
from envlabel.model import ScanResult
from envlabel.service.core.overrides import set_override
from envlabel.service.core.query import Query
from envlabel.service.daemon.metrics import Metrics, ScanMetrics
from envlabel.service.daemon.scheduler import Daemon, plan_jobs
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.conftest import free_port, wait_for_http
from tests.estates import ACCOUNT, DB, aws_estate, scan_of
from tests.kubernetes_cluster import fake_cluster


def wait_until(condition: Callable[[], Any], what: str, deadline_s: float = 60.0) -> Any:
    """Poll ``condition`` until it is truthy (readiness polling, never a timing assertion)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {deadline_s}s")


# -- the schedule, on fake time -----------------------------------------------------------------------
def test_plan_uses_the_source_interval_else_the_schedule_and_caps_jitter() -> None:
    config = config_from_dict({"schedule": {"interval": "15m", "jitter": "30s"}, "sources": [
        {"name": "org", "type": "aws"},
        {"name": "fast", "type": "aws", "interval": "20s"},
    ]})
    plans = {p.source: p for p in plan_jobs(config)}
    assert (plans["org"].interval, plans["org"].jitter) == (timedelta(minutes=15), timedelta(seconds=30))
    assert (plans["fast"].interval, plans["fast"].jitter) == (timedelta(seconds=20), timedelta(seconds=10))


def test_next_runs_fall_within_interval_plus_jitter() -> None:
    config = config_from_dict({"schedule": {"interval": "10m", "jitter": "1m"}, "sources": [
        {"name": "org", "type": "aws"}]})
    trigger = plan_jobs(config)[0].trigger()
    previous = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    fires = [trigger.get_next_fire_time(previous, previous + timedelta(minutes=5)) for _ in range(200)]
    offsets = [(f - previous).total_seconds() for f in fires]
    assert all(600 <= o <= 660 for o in offsets)
    assert len(set(offsets)) > 1  # jitter actually spreads the runs


def test_jobs_run_each_source_now_then_on_interval_one_at_a_time(tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'e.db'}", "schedule": {"interval": "5m"},
                               "sources": [{"name": "a", "type": "aws"}, {"name": "b", "type": "aws",
                                                                         "interval": "1h"}]})
    store = open_store(config.store)
    daemon = Daemon(config, store, ScanMetrics(Metrics().registry))
    daemon.schedule()
    daemon.scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
        assert set(jobs) == {"scan:a", "scan:b", "tick", "purge-decisions"}
        for name, seconds in (("a", 300), ("b", 3600)):
            job = jobs[f"scan:{name}"]
            assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, seconds)
            assert job.trigger.interval == timedelta(seconds=seconds)
            assert job.next_run_time <= datetime.now(UTC) + timedelta(seconds=1)  # the first scan is at start
    finally:
        daemon.scheduler.shutdown(wait=False)
        store.close()


# -- the scan job, in process -----------------------------------------------------------------------
class Gate:
    """A scan callable that blocks until released, counting calls."""

    def __init__(self, result: ScanResult) -> None:
        self.result = result
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, source: Source) -> ScanResult:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        return self.result


@pytest.fixture
def estate_config(tmp_path: Path) -> Config:
    return config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                             "sources": [{"name": "aws", "type": "aws"}]})


@pytest.fixture
def store(estate_config: Config) -> Iterator[Store]:
    store = open_store(estate_config.store)
    yield store
    store.close()


def test_one_source_is_never_scanned_twice_at_once(estate_config: Config, store: Store) -> None:
    gate = Gate(scan_of(aws_estate("staging")))
    daemon = Daemon(estate_config, store, ScanMetrics(Metrics().registry), scan=gate)
    first: list[Any] = []
    runner = threading.Thread(target=lambda: first.append(daemon.run_scan("aws")))
    runner.start()
    assert gate.entered.wait(10)
    assert daemon.run_scan("aws") is None  # skipped: the first is still running
    gate.release.set()
    runner.join(10)
    assert gate.calls == 1 and first[0] is not None and first[0].complete
    assert Query(estate_config, store).label(ACCOUNT)["found"]


def test_stop_abandons_a_running_scan_and_commits_nothing(estate_config: Config, store: Store) -> None:
    gate = Gate(scan_of(aws_estate("staging")))
    registry = Metrics().registry
    daemon = Daemon(estate_config, store, ScanMetrics(registry), scan=gate)
    returned: list[Any] = []
    runner = threading.Thread(target=lambda: returned.append(daemon.run_scan("aws")))
    runner.start()
    assert gate.entered.wait(10)
    assert daemon.stop(timeout=0.2) is False and daemon.abandoned
    runner.join(10)
    assert returned == [None]  # the job let go at once
    gate.release.set()  # the scanner returns late: its result must not be committed
    wait_until(lambda: registry.get_sample_value("envlabel_scans_total", {"source": "aws", "outcome": "abandoned"}),
               "the abandoned scan to end")
    assert store.last_scans() == [] and store.list_labels() == []


def test_tick_makes_expired_overrides_permanent_with_history(estate_config: Config, store: Store) -> None:
    daemon = Daemon(estate_config, store, ScanMetrics(Metrics().registry), scan=lambda s: scan_of(aws_estate()))
    daemon.run_scan("aws")
    query = Query(estate_config, store)
    now = datetime.now(UTC)
    set_override(query, DB, "sandbox", reason="load test", author="ops", expires_at=now + timedelta(seconds=1),
                 now=now - timedelta(hours=1))
    assert store.get(DB).resolution.environment == "sandbox"  # type: ignore[union-attr]
    wait_until(lambda: datetime.now(UTC) > now + timedelta(seconds=1), "the override to expire", 5)
    daemon.tick()
    assert store.get(DB).resolution.environment == "production"  # type: ignore[union-attr]
    assert [(h.before, h.resolution.environment) for h in store.history(DB)][-1] == ("sandbox", "production")


# -- envlabel serve, for real --------------------------------------------------------------------------
class HoldingProxy:
    """A loopback HTTP proxy in front of moto that can hold every request until released: a scan that is
    slow on purpose, deterministically."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.holding = threading.Event()
        self.released = threading.Event()
        self.held = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.holding.is_set():
                    with proxy._lock:
                        proxy.held += 1
                    proxy.released.wait(60)
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                finally:
                    conn.close()
                try:
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except OSError:  # the daemon left while this request was held: nobody to answer
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        head = series[len(name):]
        if head and not head.startswith("{"):
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


def test_serve_scans_on_schedule_watches_reports_and_stops_cleanly(moto: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    s3.create_bucket(Bucket="orders-data")
    s3.put_bucket_tagging(Bucket="orders-data", Tagging={"TagSet": [{"Key": "env", "Value": "staging"}]})
    bucket = "arn:aws:s3:::orders-data"
    proxy = HoldingProxy(moto)
    with fake_cluster(tmp_path) as cluster:
        cluster.fake.seed("namespaces", "payments", labels={"environment": "staging"})
        db = tmp_path / "envlabel.db"
        config = tmp_path / "envlabel.yaml"
        config.write_text(yaml.safe_dump({
            "store": f"sqlite:///{db}",
            "schedule": {"interval": "10s", "jitter": "0s"},  # the shortest interval accepted
            "sources": [
                {"name": "aws", "type": "aws", "endpoint_url": proxy.url, "regions": ["us-east-1"]},
                # scanned once an hour: a label change seen within the test came through the watch
                {"name": "prod-eu", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "interval": "1h"},
            ]}))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        exe = Path(sys.executable).parent / "envlabel"
        process = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port),
                                    "--shutdown-timeout", "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"{url}/healthz", process)
            with httpx.Client(base_url=url, timeout=10) as client:
                def label(target: str) -> dict[str, Any]:
                    body: dict[str, Any] = client.get("/v1/label", params={"target": target}).json()
                    return body

                # the first scan labels the estate; the daemon is ready
                wait_until(lambda: label(bucket)["environment"] == "staging", "the first scan")
                assert client.get("/readyz").status_code == 200
                namespace = "k8s://prod-eu/namespaces/payments"
                wait_until(lambda: label(namespace)["environment"] == "staging", "the first cluster scan")

                # a scheduled rescan picks up a changed tag
                s3.put_bucket_tagging(Bucket="orders-data", Tagging={"TagSet": [{"Key": "env", "Value": "prod"}]})
                wait_until(lambda: label(bucket)["environment"] == "production", "a scheduled rescan")
                # the watch picks up a changed namespace label long before the hourly scan
                cluster.fake.set_labels("namespaces", "payments", {"environment": "production"})
                wait_until(lambda: label(namespace)["environment"] == "production", "the watch")

                def scraped(changes: int) -> str | None:
                    text = client.get("/metrics").text
                    counted = metric(text, "envlabel_environment_changes_total") >= changes
                    # the resource gauges are refreshed after each scan (the next aws scan counts the watched
                    # namespace too)
                    gauged = metric(text, "envlabel_resources", provider="kubernetes", environment="production")
                    return text if counted and gauged >= 1 else None

                # the watched change is counted at the next report (after a scan, or the tick)
                text = wait_until(lambda: scraped(2), "the report of both changes and the next scan's gauges")
                assert metric(text, "envlabel_scans_total", source="aws", outcome="complete") >= 2
                assert metric(text, "envlabel_scan_duration_seconds_count", source="aws", outcome="complete") >= 2
                assert metric(text, "envlabel_resources", provider="aws", environment="production") >= 1
                assert metric(text, "envlabel_resources", provider="kubernetes", environment="production") >= 1
                assert metric(text, "envlabel_label_changes_total") >= 3
                assert 'envlabel_findings{kind="unlabeled",severity="high"}' in text
                assert metric(text, "envlabel_http_request_duration_seconds_count", route="/v1/label") >= 1

            # SIGTERM while a scan is stuck on the cloud API: exit 0 within the timeout, commit nothing
            proxy.holding.set()
            wait_until(lambda: proxy.held > 0, "a scan to be in flight")
            scans_before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM scans").fetchone()[0]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
            log = process.stdout.read().decode() if process.stdout else ""
            proxy.close()
        assert "abandoning the scan of aws" in log, log

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM scans").fetchone()[0] == scans_before
    # every scan row carries exactly the label changes it counted
    for scan_id, changed in conn.execute("SELECT id, changed FROM scans"):
        written = conn.execute("SELECT COUNT(*) FROM label_history WHERE scan_id = ? AND event = 'label'",
                               (scan_id,)).fetchone()[0]
        assert written == changed, (scan_id, written, changed)
    assert conn.execute("SELECT environment FROM labels WHERE target = ?", (bucket,)).fetchone()[0] == "production"
    assert os.path.getsize(db) > 0
