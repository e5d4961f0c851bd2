"""One contract for every store backend: the same tests on a real SQLite file and a real PostgreSQL.

Each test gets an empty store: a new SQLite file, or a new schema on the test run's PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Override, Resource, ScanError, ScanResult
from envlabel.service.core.overrides import relabel_lapsed, remove_override, set_override
from envlabel.service.core.pipeline import commit_scan, relabel, relabel_subtree
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.records import Fence, FencedOut
from envlabel.store.schema import MIGRATIONS
from envlabel.store.sql import Store
from tests.estates import ACCOUNT, BUCKET, DB, SCOPE, T0, VPC, aws_estate, scan_of
from tests.postgres_db import fresh_schema, postgres_url

HOUR = timedelta(hours=1)
CONFIG = config_from_dict({})
TAX = Taxonomy.from_config(CONFIG)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'envlabel.db'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def scan(store: Store, resources: list[Resource], at: object, *, errors: list[ScanError] | None = None,
         fence: Fence | None = None, source: str = "aws") -> object:
    result = ScanResult(source, resources, errors or [], scan_of(resources, source).scopes)
    return commit_scan(store, TAX, result, at, at, fence=fence)  # type: ignore[arg-type]


def env(store: Store, target: str, now: object = None) -> str:
    return str(Query(CONFIG, store).label(target, now=now or T0 + 3 * HOUR)["environment"])  # type: ignore[arg-type]


def table_counts(store: Store) -> dict[str, int]:
    tables = ("resources", "labels", "label_history", "scans", "scopes", "aliases")
    return {t: int(store._query(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in tables}


def test_scan_commit_labels_with_evidence(store: Store) -> None:
    summary = scan(store, aws_estate(account_env="staging", db_tags={"env": "prod"}), T0)
    assert summary.resources == 5 and summary.label_changes == 5  # type: ignore[attr-defined]
    body = Query(CONFIG, store).label(DB, now=T0)
    assert body["environment"] == "production" and body["conflict"] is True and body["decided_by"] == "tag"
    assert {(e["signal"], e["environment"]) for e in body["evidence"]} >= {("tag", "production"),
                                                                           ("inherited", "staging")}
    assert body["observed_at"] == "2026-03-01T00:00:00.000000Z"
    assert env(store, BUCKET) == "production"  # the OU's name outranks the account's staging tag
    stored = store.get(BUCKET)
    assert stored is not None and stored.source == "aws" and stored.resource.parent == ACCOUNT
    assert store.get("arn:aws:s3:::never-seen") is None
    again = scan(store, aws_estate(account_env="staging", db_tags={"env": "prod"}), T0 + HOUR)
    assert (again.written, again.label_changes, again.removed) == (0, 0, 0)  # type: ignore[attr-defined]
    assert [s["id"] for s in store.last_scans()] == [2]


def test_complete_scan_tombstones_and_a_partial_one_removes_nothing(store: Store) -> None:
    scan(store, aws_estate(), T0)
    partial = scan(store, aws_estate(with_db=False), T0 + HOUR, errors=[ScanError(SCOPE, "AccessDenied")])
    assert partial.removed == 0 and store.get(DB).tombstoned_at is None  # type: ignore[attr-defined,union-attr]
    complete = scan(store, aws_estate(with_db=False), T0 + 2 * HOUR)
    assert complete.removed == 1  # type: ignore[attr-defined]
    gone = store.get(DB)
    assert gone is not None and gone.tombstoned_at == T0 + 2 * HOUR
    assert [h.event for h in store.history(DB)] == ["label", "gone"]
    assert DB not in {s.resource.id for s in store.list_labels()}
    assert DB in {s.resource.id for s in store.list_labels(include_gone=True)}
    scan(store, aws_estate(), T0 + 3 * HOUR)  # it comes back: a new history event, labeled again
    assert [h.event for h in store.history(DB)] == ["label", "gone", "label"]
    assert store.get(DB).tombstoned_at is None  # type: ignore[union-attr]


def test_history_and_label_at(store: Store) -> None:
    scan(store, aws_estate(account_env="sandbox", db_tags={"env": "dev"}), T0)
    resources = aws_estate(account_env="sandbox", db_tags={"env": "stg"})
    scan(store, resources, T0 + HOUR)
    history = store.history(DB)
    assert [(h.before, h.resolution.environment) for h in history] == [(None, "production"),
                                                                       ("production", "production")]
    at = store.label_at(DB, T0 + timedelta(minutes=30))
    assert at is not None and at.at == T0 and at.scan_id == 1
    assert store.label_at(DB, T0 - HOUR) is None
    mark = store.history_mark()
    assert mark >= 6
    count, changed = store.history_since(0, mark, 10)
    assert count == mark and changed == []


def test_overrides_relabel_their_subtree_and_keep_events(store: Store) -> None:
    scan(store, aws_estate(account_env="staging"), T0)
    query = Query(CONFIG, store)
    body = set_override(query, ACCOUNT, "sandbox", reason="migration", author="ana", now=T0 + HOUR,
                        expires_at=T0 + 2 * HOUR)
    assert body["seen"] is True and body["relabeled"] == 4  # the account, its VPC, bucket and database
    assert env(store, DB, T0 + HOUR) == "sandbox"
    assert set(store.overrides()) == {ACCOUNT}
    # the expiry is persisted by the tick, with history
    assert relabel_lapsed(store, TAX, T0 + 3 * HOUR) == 4
    assert store.history(DB)[-1].resolution.environment == "production"
    set_override(query, VPC, "staging", reason="cutover", author="ana", now=T0 + 4 * HOUR)
    remove_override(query, VPC, author="bo", reason="done", now=T0 + 5 * HOUR)
    assert [e["action"] for e in store.override_events()] == ["set", "set", "rm"]
    assert [e["author"] for e in store.override_events(VPC)] == ["ana", "bo"]
    assert store.overrides().keys() == {ACCOUNT}


def test_list_pagination_and_filters(store: Store) -> None:
    resources = [Resource(f"arn:aws:s3:::bucket-{i:03d}", "aws", "s3:bucket", f"bucket-{i:03d}", ACCOUNT,
                          {"env": "dev" if i % 3 else "prod"}, SCOPE) for i in range(25)]
    account = [r for r in aws_estate(account_env="sandbox", with_db=False) if r.kind != "aws:ou"]
    scan(store, [*account, *resources], T0)
    everything = [s.resource.id for s in store.list_labels()]
    assert len(everything) == 28 and everything == sorted(everything)  # byte order on both backends
    pages: list[str] = []
    after = ""
    while page := store.list_labels(after=after, limit=7):
        pages += [s.resource.id for s in page]
        after = page[-1].resource.id
    assert pages == everything
    prod = {s.resource.id for s in store.list_labels(environment="production")}
    assert {f"arn:aws:s3:::bucket-{i:03d}" for i in range(0, 25, 3)} <= prod
    assert not any(s.resolution.environment == "production"  # type: ignore[union-attr]
                   for s in store.list_labels(environment="sandbox"))
    assert store.list_labels(provider="gcp") == []
    assert store.counts() == {("aws", "sandbox"): 19, ("aws", "production"): 9}
    assert store.environment_counts("aws") == {"sandbox": 19, "production": 9}
    assert set(store.get_many([BUCKET, "arn:aws:s3:::bucket-001", "nope"])) == {BUCKET, "arn:aws:s3:::bucket-001"}
    audited = [r for batch in store.iter_for_audit(["env"], batch=10) for r, _, _ in batch]
    assert len(audited) == 28 and {r.id: r.tags for r in audited}["arn:aws:s3:::bucket-000"] == {"env": "prod"}


def test_subtree_and_relabel_after_a_taxonomy_change(store: Store) -> None:
    scan(store, [r for r in aws_estate(account_env="qa") if r.kind != "aws:ou"], T0)
    with store.transaction() as tx:
        assert tx.subtree([VPC]) == sorted([VPC, DB])
        assert tx.subtree([ACCOUNT]) == sorted([ACCOUNT, VPC, DB, BUCKET])
        assert set(tx.containers([DB])) == {VPC, ACCOUNT}
    assert env(store, DB, T0) == "sandbox"
    # a taxonomy in which "qa" means staging: every label below the account changes
    moved = Taxonomy.from_config(config_from_dict({"synonyms": {"staging": ["staging", "qa"]}}))
    with store.transaction() as tx:
        changes, environments = relabel(tx, moved, T0 + HOUR, None)
    assert changes == 4 and environments == {"staging": 4}
    assert store.history(DB)[-1].before == "sandbox" and store.history(DB)[-1].resolution.environment == "staging"
    assert relabel_subtree(store, TAX, [VPC], T0 + 2 * HOUR) == 2  # back to sandbox, the VPC's subtree only
    assert env(store, DB, T0 + 2 * HOUR) == "sandbox" and env(store, BUCKET, T0 + 2 * HOUR) == "staging"


def test_a_failed_commit_leaves_the_previous_state(store: Store) -> None:
    scan(store, aws_estate(db_tags={"env": "dev"}), T0)
    before = table_counts(store)

    def exploding() -> Iterator[Resource]:
        yield from aws_estate(db_tags={"env": "prod"})
        raise KeyboardInterrupt  # the process dies half way through the commit

    with pytest.raises(KeyboardInterrupt):
        commit_scan(store, TAX, ScanResult("aws", exploding()), T0, T0 + HOUR)  # type: ignore[arg-type]
    assert table_counts(store) == before
    assert store.get(DB).resource.tags == {"env": "dev"}  # type: ignore[union-attr]
    scan(store, aws_estate(db_tags={"env": "prod"}), T0 + 2 * HOUR)  # the store still takes writes
    assert store.get(DB).resource.tags == {"env": "prod"}  # type: ignore[union-attr]


def test_a_stale_fencing_token_commits_nothing(store: Store) -> None:
    with store.transaction() as tx:
        old = tx.advance_fence("aws", "replica-a", T0)
    scan(store, aws_estate(db_tags={"env": "dev"}), T0, fence=old)
    with store.transaction() as tx:
        new = tx.advance_fence("aws", "replica-b", T0 + HOUR)
    assert (old.epoch, new.epoch) == (1, 2)
    before = table_counts(store)
    with pytest.raises(FencedOut, match=r"aws@1 is stale \(epoch 2 held by replica-b\)"):
        scan(store, aws_estate(db_tags={"env": "prod"}), T0 + HOUR, fence=old)
    assert table_counts(store) == before
    assert store.get(DB).resource.tags == {"env": "dev"}  # type: ignore[union-attr]
    scan(store, aws_estate(db_tags={"env": "prod"}), T0 + 2 * HOUR, fence=new)
    assert store.get(DB).resource.tags == {"env": "prod"}  # type: ignore[union-attr]
    with pytest.raises(FencedOut, match="no epoch at all"):  # tokens are per source
        scan(store, [], T0 + 3 * HOUR, fence=Fence("gcp", 1), source="gcp")


def test_reopening_and_concurrent_openings_migrate_once(store_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[Store] = []

    def open_one() -> None:
        try:
            opened.append(open_store(store_url))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    # replicas starting at once: each migrates or finds the work done, none fails
    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {s.schema_version for s in opened} == {len(MIGRATIONS)}
    assert opened[0]._query("SELECT COUNT(*) FROM schema_version")[0][0] == len(MIGRATIONS)
    for s in opened:
        s.close()


def test_override_rows_round_trip(store: Store) -> None:
    with store.transaction() as tx:
        tx.set_override(Override(DB, "sandbox", "why", "ana", T0, T0 + HOUR))
    assert store.overrides()[DB] == Override(DB, "sandbox", "why", "ana", T0, T0 + HOUR)
    with store.transaction() as tx:
        assert tx.remove_override(DB, "bo", "done", T0 + HOUR) is True
        assert tx.remove_override(DB, "bo", "done", T0 + HOUR) is False


def test_without_postgresql_its_tests_skip_outside_ci_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVLABEL_TEST_POSTGRES_URL", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"dev\.py test"):
        postgres_url()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must test PostgreSQL"):
        postgres_url()


@pytest.mark.postgres
def test_writers_on_two_replicas_take_turns() -> None:
    """One writer at a time across processes, as SQLite's file lock gives: a scan's relabel never interleaves
    with an override another replica sets (READ COMMITTED alone would let one overwrite the other)."""
    import psycopg

    with fresh_schema() as url:
        first, second = open_store(url), open_store(url)
        holding, release = threading.Event(), threading.Event()
        order: list[str] = []

        def long_commit() -> None:
            with first.transaction() as tx:
                holding.set()
                release.wait(30)
                tx.set_override(Override(DB, "sandbox", "scan", "replica-a", T0))
                order.append("first")

        def override() -> None:
            with second.transaction() as tx:
                tx.set_override(Override(DB, "staging", "person", "replica-b", T0 + HOUR))
            order.append("second")

        threads = [threading.Thread(target=long_commit), threading.Thread(target=override)]
        threads[0].start()
        assert holding.wait(30)
        threads[1].start()
        with psycopg.connect(url, autocommit=True) as admin:
            def waiting() -> int:
                row = admin.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                                    ).fetchone()
                return int(row[0]) if row else 0

            while not waiting():  # polling for the second writer to queue, not timing
                assert threads[1].is_alive(), "the second writer did not wait for the first"
        release.set()
        for thread in threads:
            thread.join(30)
        assert order == ["first", "second"]
        assert first.overrides()[DB].environment == "staging"  # the later writer's, whole
        first.close()
        second.close()
