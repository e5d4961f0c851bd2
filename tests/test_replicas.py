"""Several replicas, one scanning leader: the Lease (fake API server, real kubernetes client), the PostgreSQL
advisory lock, fencing of a stale leader, and two real ``envlabel serve`` processes on one PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
import yaml
from prometheus_client import CollectorRegistry

from envlabel.config import Source, config_from_dict
from envlabel.discovery.kubernetes import build_api_client
from envlabel.discovery.kubernetes_lease import KubernetesLease
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import ScanResult
from envlabel.service.core.overrides import set_override
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.service.daemon.leader import Leadership, election_kind, leadership_for
from envlabel.service.daemon.metrics import ScanMetrics
from envlabel.service.daemon.scheduler import Daemon
from envlabel.store import open_store
from envlabel.store.locks import AdvisoryLock
from envlabel.store.records import FencedOut
from envlabel.store.sql import Store
from tests.conftest import free_port, wait_for_http
from tests.estates import ACCOUNT, DB, T0, aws_estate, scan_of
from tests.kubernetes_cluster import FakeCluster, fake_cluster
from tests.postgres_db import fresh_schema
from tests.test_daemon import HoldingProxy, wait_until

LEASE_S = 15.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path) as running:
        running.fake.seed("namespaces", "envlabel")
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    yield opened
    opened.close()


def lease_replica(cluster: FakeCluster, store: Store, name: str, clock: FakeClock) -> Leadership:
    api = build_api_client(cluster.source())
    lease = KubernetesLease(api, "envlabel", "envlabel-leader", name, LEASE_S, clock=clock)
    return Leadership(lease, store, ["aws"], identity=name, retry_period_s=2, renew_deadline_s=10, clock=clock)


def lease_spec(cluster: FakeCluster) -> dict[str, Any]:
    kind = cluster.fake.kind("leases", "coordination.k8s.io")
    spec: dict[str, Any] = cluster.fake.find(kind, "envlabel", "envlabel-leader")["spec"]
    return spec


def test_one_lease_holder_and_a_takeover_after_the_lease_period(cluster: FakeCluster, store: Store) -> None:
    clock = FakeClock()
    a, b = lease_replica(cluster, store, "replica-a", clock), lease_replica(cluster, store, "replica-b", clock)
    assert a.step() is True and b.step() is False
    assert lease_spec(cluster)["holderIdentity"] == "replica-a"
    token_a = a.token("aws")
    assert token_a is not None and b.token("aws") is None
    commit_scan(store, Taxonomy(), scan_of(aws_estate(db_tags={"env": "dev"})), T0, T0, fence=token_a)

    # the leader renews every retry period: the follower never sees the lease expire
    for _ in range(10):
        clock.now += 2
        assert a.step() is True and b.step() is False
    # the leader stops renewing (frozen, partitioned): one lease period later the follower takes over
    clock.now += LEASE_S - 1
    assert b.step() is False
    clock.now += 2
    assert b.step() is True
    spec = lease_spec(cluster)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("replica-b", 1)
    token_b = b.token("aws")
    assert token_b is not None and token_b.epoch == token_a.epoch + 1

    # the old leader wakes up: its late commit is fenced off and changes nothing
    before = store.get(DB)
    with pytest.raises(FencedOut, match="epoch 2 held by replica-b"):
        commit_scan(store, Taxonomy(), scan_of(aws_estate(db_tags={"env": "prod"})), T0, T0, fence=token_a)
    assert store.get(DB) == before
    # and at its next round it learns it no longer leads
    assert a.step() is False and a.token("aws") is None


def test_a_released_lease_is_taken_at_the_next_try(cluster: FakeCluster, store: Store) -> None:
    clock = FakeClock()
    a, b = lease_replica(cluster, store, "replica-a", clock), lease_replica(cluster, store, "replica-b", clock)
    assert a.step() is True and b.step() is False
    a.stop()
    assert not a.is_leader and not lease_spec(cluster).get("holderIdentity")
    assert b.step() is True  # no waiting for the lease period


def test_a_leader_that_cannot_renew_steps_down_at_the_renew_deadline(cluster: FakeCluster, store: Store) -> None:
    clock = FakeClock()
    a = lease_replica(cluster, store, "replica-a", clock)
    assert a.step() is True
    cluster.fake.forbid("leases", "coordination.k8s.io")  # the API refuses (RBAC changed, API overloaded)
    clock.now += 8
    assert a.step() is True  # still within renew_deadline (10s) of the last renewal
    clock.now += 3
    assert a.step() is False and a.token("aws") is None


def test_a_follower_daemon_neither_scans_nor_expires_nor_announces(cluster: FakeCluster, store: Store) -> None:
    clock = FakeClock()
    a, b = lease_replica(cluster, store, "replica-a", clock), lease_replica(cluster, store, "replica-b", clock)
    assert a.step() is True and b.step() is False
    config = config_from_dict({"sources": [{"name": "aws", "type": "aws"}]})
    scanned: list[str] = []

    def scan(source: Source) -> ScanResult:
        scanned.append(source.name)
        return scan_of(aws_estate())

    def daemon(leadership: Leadership) -> tuple[Daemon, CollectorRegistry]:
        registry = CollectorRegistry()
        return Daemon(config, store, ScanMetrics(registry), scan=scan, watch=False, leadership=leadership), registry

    (follower, follower_metrics), (leader, leader_metrics) = daemon(b), daemon(a)
    assert follower.run_scan("aws") is None and scanned == []
    assert leader.run_scan("aws") is not None and scanned == ["aws"]
    # an override that has expired: only the leader's tick persists the expiry and announces the change
    past = datetime.now(UTC) - timedelta(hours=2)
    set_override(Query(config, store), ACCOUNT, "sandbox", reason="test", author="ana", now=past,
                 expires_at=past + timedelta(minutes=1))
    follower.tick()
    assert store.get(DB).resolution.environment == "sandbox"  # type: ignore[union-attr]
    assert not follower_metrics.get_sample_value("envlabel_label_changes_total")
    before = leader_metrics.get_sample_value("envlabel_label_changes_total") or 0
    leader.tick()
    assert store.get(DB).resolution.environment == "production"  # type: ignore[union-attr]
    assert (leader_metrics.get_sample_value("envlabel_label_changes_total") or 0) > before
    follower.tick()
    assert not follower_metrics.get_sample_value("envlabel_label_changes_total")


def test_auto_election_kind() -> None:
    pg = "postgresql://u@h/db"
    assert election_kind(config_from_dict({})) == "none"
    assert election_kind(config_from_dict({"store": pg})) == "advisory_lock"
    k8s = [{"name": "prod", "type": "kubernetes", "kubeconfig": "/k"}]
    assert election_kind(config_from_dict({"store": pg, "sources": k8s})) == "lease"
    assert election_kind(config_from_dict({"store": pg, "leader_election": {"kind": "none"}})) == "none"


def test_leader_election_periods_must_nest() -> None:
    with pytest.raises(Exception, match="retry_period < renew_deadline < lease_duration"):
        config_from_dict({"leader_election": {"lease_duration": "5s"}})


@pytest.mark.postgres
def test_advisory_lock_one_holder_and_a_dropped_session_hands_over() -> None:
    with fresh_schema() as url:
        store = open_store(url)
        try:
            config = config_from_dict({"store": url, "sources": [{"name": "aws", "type": "aws"}]})
            a = leadership_for(config, store, identity="replica-a")
            b = leadership_for(config, store, identity="replica-b")
            assert a is not None and b is not None and isinstance(a.elector, AdvisoryLock)
            assert a.step() is True and b.step() is False and b.step() is False
            # the leader's session dies (process killed, connection cut): the server frees the lock at once
            with psycopg.connect(url, autocommit=True) as admin:
                key = admin.execute(f"SELECT {AdvisoryLock._KEY}").fetchone()[0]  # type: ignore[index]
                holders = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid::bigint = %s AND objid::bigint = %s", ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
                ).fetchall()
                assert holders == [(True,)]
            assert wait_until(b.step, "the follower to take the lock", 10)
            assert a.step() is False and a.token("aws") is None  # a lost session is lost leadership, at once
            assert b.token("aws") is not None and b.token("aws").epoch == 2  # type: ignore[union-attr]
            b.stop()
            assert a.step() is True
        finally:
            store.close()


# -- two real replicas ------------------------------------------------------------------------------
def serve(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = Path(sys.executable).parent / "envlabel"
    with log.open("wb") as out:
        process = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port),
                                    "--shutdown-timeout", "3"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/healthz", process)
    return process, url


class Poller(threading.Thread):
    """Asks a replica for a label over and over, keeping every status code."""

    def __init__(self, url: str, target: str) -> None:
        super().__init__(daemon=True)
        self.url, self.target = url, target
        self.statuses: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.halt.is_set():
                try:
                    self.statuses.append(client.get("/v1/label", params={"target": self.target}).status_code)
                except httpx.HTTPError as exc:
                    self.statuses.append(-1)
                    print(f"poll failed: {exc}", file=sys.stderr)


@pytest.mark.postgres
def test_two_replicas_one_scans_and_the_survivor_takes_over(moto: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    for name, env in (("orders-data", "staging"), ("orders-logs", "prod")):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "env", "Value": env}]})
    bucket = "arn:aws:s3:::orders-data"
    proxy = HoldingProxy(moto)
    processes: list[subprocess.Popen[bytes]] = []
    with fresh_schema() as store_url:
        config = tmp_path / "envlabel.yaml"
        config.write_text(yaml.safe_dump({
            "store": store_url,
            "schedule": {"interval": "10s", "jitter": "0s"},  # the shortest interval accepted
            "sources": [{"name": "aws", "type": "aws", "endpoint_url": proxy.url, "regions": ["us-east-1"]}],
            "leader_election": {"kind": "advisory_lock", "retry_period": "200ms", "renew_deadline": "1s",
                                "lease_duration": "2s"}}))
        logs = [tmp_path / "replica-0.log", tmp_path / "replica-1.log"]
        urls: list[str] = []
        try:
            for log in logs:
                process, url = serve(config, log)
                processes.append(process)
                urls.append(url)

            def leaders() -> list[int]:
                return [i for i, log in enumerate(logs) if "is now the leader" in log.read_text()]

            leader = wait_until(lambda: leaders() or None, "a leader")[0]
            follower = 1 - leader
            # every replica answers from the one store; only the leader scans
            for url in urls:
                wait_until(partial(labeled_as, url, bucket, "staging"), "the first scan")
            wait_until(lambda: logs[leader].read_text().count("scan of aws: complete") >= 2, "two scans")
            assert leaders() == [leader]
            assert "scan of aws: complete" not in logs[follower].read_text()

            poller = Poller(urls[follower], bucket)
            poller.start()
            # the leader is mid-scan (held at the cloud API) when it is killed
            proxy.holding.set()
            wait_until(lambda: proxy.held > 0, "the leader's scan to be in flight")
            with psycopg.connect(store_url, autocommit=True) as conn:
                scans_before = conn.execute("SELECT COUNT(*) FROM scans").fetchone()[0]  # type: ignore[index]
            killed_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            processes[leader].send_signal(signal.SIGKILL)
            processes[leader].wait(timeout=10)
            proxy.released.set()

            # the survivor takes over and scans; a changed tag shows it is the one scanning now
            wait_until(lambda: "is now the leader" in logs[follower].read_text(), "the survivor to lead", 30)
            s3.put_bucket_tagging(Bucket="orders-data", Tagging={"TagSet": [{"Key": "env", "Value": "prod"}]})
            wait_until(partial(labeled_as, urls[follower], bucket, "production"), "the survivor's scan")
            assert "scan of aws: complete" in logs[follower].read_text()
            poller.halt.set()
            poller.join(timeout=15)
            assert poller.statuses and set(poller.statuses) == {200}, poller.statuses
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
            proxy.close()

        with psycopg.connect(store_url, autocommit=True) as conn:
            rows = conn.execute("SELECT id, started_at, changed, resources FROM scans ORDER BY id").fetchall()
            # nothing of the killed scan: every scan after those committed before the kill began after it
            assert all(started > killed_at for _, started, _, _ in rows[scans_before:]), (killed_at, rows)
            assert len(rows) > scans_before
            for scan_id, _, changed, _ in rows:  # each scan row carries exactly the label changes it counted
                written = conn.execute("SELECT COUNT(*) FROM label_history WHERE scan_id = %s AND event = 'label'",
                                       (scan_id,)).fetchone()[0]  # type: ignore[index]
                assert written == changed, (scan_id, written, changed)
            live = conn.execute("SELECT COUNT(*) FROM resources WHERE tombstoned_at IS NULL").fetchone()[0]  # type: ignore[index]
            labeled = conn.execute("SELECT COUNT(*) FROM labels l JOIN scans s ON s.id = l.scan_id").fetchone()[0]  # type: ignore[index]
            assert labeled == live
            epochs = conn.execute("SELECT epoch FROM fences WHERE source = 'aws'").fetchone()[0]  # type: ignore[index]
            assert epochs == 2


def labeled_as(url: str, target: str, environment: str) -> bool:
    body = json.loads(httpx.get(f"{url}/v1/label", params={"target": target}, timeout=10).text)
    return bool(body.get("environment") == environment)

