"""Watches keep the store current: a label change in the cluster shows in the store, 410 relists, stop is prompt."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from envlabel.config import Config, config_from_dict
from envlabel.service.core.query import Query
from envlabel.service.daemon.watch import KubernetesWatcher
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.kubernetes_cluster import FakeCluster, fake_cluster, seed_payments

NS = "k8s://prod-eu/namespaces/payments"
API = "k8s://prod-eu/payments/deployments/api"


def eventually(check: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Poll until ``check`` holds (readiness polling, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not true within {deadline_s}s")
        time.sleep(0.01)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[FakeCluster, Store, KubernetesWatcher]]:
    with fake_cluster(tmp_path) as cluster:
        seed_payments(cluster.fake)
        config: Config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
        store = open_store(config.store)
        watcher = KubernetesWatcher(config, store, cluster.source())
        watcher.start()
        try:
            assert watcher.wait_synced(10)
            yield cluster, store, watcher
        finally:
            watcher.stop()


def environment(store: Store, target: str) -> str | None:
    stored = store.get(target)
    if stored is None or stored.tombstoned_at is not None or stored.resolution is None:
        return None
    return stored.resolution.environment


def test_initial_list_fills_the_store(running: tuple[FakeCluster, Store, KubernetesWatcher]) -> None:
    _, store, watcher = running
    assert environment(store, API) == "staging"
    assert store.get("k8s://prod-eu") is not None  # the cluster record comes with its namespaces
    assert sum(watcher.stats.relists.values()) == len(watcher.scanner.kinds)


def test_namespace_label_change_relabels_its_objects(running: tuple[FakeCluster, Store, KubernetesWatcher]) -> None:
    cluster, store, _ = running
    cluster.fake.set_labels("namespaces", "payments", {"environment": "prod"})
    eventually(lambda: environment(store, API) == "production")
    assert environment(store, NS) == "production"
    history = store.history(API)
    assert [h.resolution.environment for h in history] == ["staging", "production"]


def test_created_and_deleted_objects(running: tuple[FakeCluster, Store, KubernetesWatcher]) -> None:
    cluster, store, _ = running
    cluster.fake.seed("deployments", "batch", "scratch")
    eventually(lambda: environment(store, "k8s://prod-eu/scratch/deployments/batch") == "sandbox")
    cluster.fake.remove("deployments", "api", "payments")
    eventually(lambda: (store.get(API) or pytest.fail("never seen")).tombstoned_at is not None)


def test_410_during_watch_relists_and_continues(running: tuple[FakeCluster, Store, KubernetesWatcher]) -> None:
    cluster, store, watcher = running
    relists = watcher.stats.relists["namespaces"]
    cluster.fake.compact(expire_watches=True)
    eventually(lambda: watcher.stats.relists["namespaces"] > relists)
    cluster.fake.set_labels("namespaces", "payments", {"environment": "sandbox"})
    eventually(lambda: environment(store, API) == "sandbox")
    assert not watcher.stats.errors


def test_objects_deleted_while_unwatched_are_tombstoned_by_the_relist(tmp_path: Path) -> None:
    with fake_cluster(tmp_path) as cluster:
        seed_payments(cluster.fake)
        config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
        store = open_store(config.store)
        first = KubernetesWatcher(config, store, cluster.source())
        first.start()
        assert first.wait_synced(10)
        first.stop()
        cluster.fake.remove("deployments", "api", "payments")
        cluster.fake.compact()  # the events are gone: only a list can tell
        second = KubernetesWatcher(config, store, cluster.source())
        second.start()
        try:
            assert second.wait_synced(10)
            gone = store.get(API)
            assert gone is not None and gone.tombstoned_at is not None
            assert environment(store, "k8s://prod-eu/payments/services/api") == "staging"
        finally:
            second.stop()


def test_stop_ends_every_watch_thread(running: tuple[FakeCluster, Store, KubernetesWatcher]) -> None:
    _, _, watcher = running
    assert watcher.running
    watcher.stop(timeout=5)
    assert not watcher.running


def test_a_forbidden_kind_is_reported_and_others_keep_watching(tmp_path: Path) -> None:
    with fake_cluster(tmp_path) as cluster:
        seed_payments(cluster.fake)
        cluster.fake.forbid("cronjobs", "batch")
        config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
        store = open_store(config.store)
        watcher = KubernetesWatcher(config, store, cluster.source(), max_backoff=0.2)
        watcher.start()
        try:
            eventually(lambda: any("cronjobs" in e.message for e in watcher.stats.errors))
            cluster.fake.set_labels("namespaces", "payments", {"environment": "prod"})
            eventually(lambda: environment(store, API) == "production")
            assert Query(config, store).label("k8s://prod-eu/payments/cronjobs/api")["found"] is False
        finally:
            watcher.stop()


def test_an_unloadable_kubeconfig_is_reported_and_retried(tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        {"type": "kubernetes", "name": "gone", "kubeconfig": str(tmp_path / "missing")}]})
    watcher = KubernetesWatcher(config, open_store(config.store), config.sources[0],  # type: ignore[arg-type]
                                max_backoff=0.1)
    watcher.start()
    try:
        eventually(lambda: any("cannot load the kubeconfig" in e.message for e in watcher.stats.errors))
        assert watcher.running  # it keeps retrying: the file may appear
    finally:
        watcher.stop()
    assert not watcher.running


def test_an_event_that_changes_no_signal_writes_no_label(running: tuple[FakeCluster, Store, KubernetesWatcher]) -> None:
    cluster, store, watcher = running
    before = (len(store.history(API)), watcher.stats.label_changes, watcher.stats.events["namespaces"])
    kind = cluster.fake.kind("namespaces")
    cluster.fake.patch(kind, None, "payments", {"metadata": {"annotations": {"owner": "pay-team"}}})
    eventually(lambda: watcher.stats.events["namespaces"] > before[2])
    assert (len(store.history(API)), watcher.stats.label_changes) == before[:2]


def test_bookmarks_move_a_quiet_watch_forward(tmp_path: Path) -> None:
    """A kind with no events still resumes from a recent version (so a compaction does not force a relist)."""
    with fake_cluster(tmp_path, bookmark_interval=0.1) as cluster:
        seed_payments(cluster.fake)
        config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
        watcher = KubernetesWatcher(config, open_store(config.store), cluster.source(), timeout_seconds=1)
        watcher.start()
        try:
            assert watcher.wait_synced(10)
            after = int(cluster.fake.set_labels("namespaces", "payments", {"team": "x"})["metadata"]["resourceVersion"])

            def resumed() -> list[int]:
                return [int(r.query["resourceVersion"]) for r in cluster.fake.requests
                        if r.verb == "watch" and r.resource == "deployments"]

            eventually(lambda: max(resumed()) >= after)
            # etcd compacts to a past revision: whatever resumes from before the namespace change is gone, and
            # only a bookmark can have moved the quiet deployments watch past it
            cluster.fake.compact(up_to=after)
            relists = watcher.stats.relists["deployments.apps"]
            count = len(resumed())
            eventually(lambda: len(resumed()) > count + 1)  # reconnected twice since the compaction
            assert watcher.stats.relists["deployments.apps"] == relists
            assert not watcher.stats.events["deployments.apps"]
        finally:
            watcher.stop()
