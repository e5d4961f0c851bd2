"""The decision log: the store's rows (SQLite and PostgreSQL), the batched writer (threads, a full queue, a broken
store), retention, and the reads (filters, pages, label snapshots, the shadow-mode report).

Answers are made by the real :class:`Authority` over a store the real pipeline populated (tests/api_estate.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from envlabel.config import DecisionLog as DecisionLogSettings
from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.records import CheckRecord
from envlabel.service.core.authority import Authority, Caller
from envlabel.service.core.decision_log import (
    BatchedDecisionLog,
    DirectDecisionLog,
    decision_log_for,
    list_decisions,
    would_block_report,
)
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.service.daemon.metrics import Metrics, ScanMetrics
from envlabel.service.daemon.scheduler import Daemon
from envlabel.store import open_store
from envlabel.store.records import DecisionRow
from envlabel.store.sql import Store
from tests.api_estate import EKS_ALIAS, PROD_DB, PROD_POD, SANDBOX_DB, STAGING_DB, populate
from tests.postgres_db import fresh_schema

CONFIG = config_from_dict({"approvers": {"production": ["sre-oncall"], "staging": ["team-lead"]}})
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DELETE, READ = "rds:DeleteDBInstance", "rds:DescribeDBInstances"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
        yield opened
        opened.close()
        return
    with fresh_schema() as url:
        opened = open_store(url)
        yield opened
        opened.close()


@pytest.fixture
def estate(store: Store) -> Store:
    populate(store)
    return store


def settings(**values: object) -> DecisionLogSettings:
    return DecisionLogSettings.model_validate({"batch_size": 50, "flush_interval": "10ms", **values})


def authority(store: Store, log: BatchedDecisionLog | DirectDecisionLog | None = None, **config: object) -> Authority:
    return Authority(Query(config_from_dict({"approvers": {"production": ["sre-oncall"]}, **config}), store), log=log)


def row(at: datetime, *, principal: str = "ci", decision: str = "deny", mode: str = "enforce",
        environment: str = "production", target: str = PROD_DB) -> DecisionRow:
    return DecisionRow(at, principal, None, ("deployers",), "http", mode, DELETE, "delete", target, target,
                       environment, decision, f"policy.{environment}.delete", ("why",), None, None, False)


def stored_count(store: Store) -> int:
    return len(store.decisions(limit=1_000_000))


# -- the store ---------------------------------------------------------------------------------
def test_store_round_trip(store: Store) -> None:
    written = [row(T0, principal="ci"), DecisionRow(T0 + timedelta(seconds=1), "user:alice", "ci", (), "cli",
                                                     "audit", READ, "read", "orders", None, "production", "allow",
                                                     "policy.production.read", (), 7, "apr-abc", True)]
    store.record_decisions(written)
    back = store.decisions()
    assert [d.row for d in back] == written[::-1]  # newest first, every field as written
    assert back[0].id > back[1].id


def test_store_filters_use_each_column(store: Store) -> None:
    store.record_decisions([row(T0, principal="ci"), row(T0, principal="bob", decision="allow"),
                            row(T0 + timedelta(hours=1), principal="ci", target=STAGING_DB, mode="audit")])
    assert [d.row.principal for d in store.decisions(principal="bob")] == ["bob"]
    assert [d.row.target for d in store.decisions(target_id=STAGING_DB)] == [STAGING_DB]
    assert len(store.decisions(decision="deny")) == 2
    assert [d.row.at for d in store.decisions(since=T0 + timedelta(minutes=30))] == [T0 + timedelta(hours=1)]
    assert [d.row.mode for d in store.decisions(would_block=True)] == ["audit"]
    newest = store.decisions(limit=1)
    assert len(newest) == 1 and [d.id for d in store.decisions(before_id=newest[0].id)] == \
        [d.id for d in store.decisions()[1:]]


def test_purge_deletes_only_older_rows(store: Store) -> None:
    store.record_decisions([row(T0 - timedelta(days=d)) for d in range(5)])
    assert store.purge_decisions(T0 - timedelta(days=2, hours=12)) == 2  # 3 and 4 days old
    assert sorted(d.row.at for d in store.decisions()) == [T0 - timedelta(days=d) for d in (2, 1, 0)]
    assert store.purge_decisions(T0 - timedelta(days=30)) == 0


def test_label_snapshots_are_the_newest_history_ids(estate: Store) -> None:
    snapshots = estate.label_snapshots([PROD_DB, STAGING_DB, "arn:aws:rds:us-east-1:999999999999:db:ghost"])
    assert set(snapshots) == {PROD_DB, STAGING_DB}
    assert snapshots[PROD_DB] == estate.past_label(PROD_DB, datetime.now(UTC) + timedelta(days=1)).row  # type: ignore[union-attr]


# -- the batched writer --------------------------------------------------------------------------
def test_batched_log_writes_everything_recorded_from_many_threads(estate: Store) -> None:
    log = BatchedDecisionLog(estate, settings(batch_size=7)).start()
    checks = authority(estate, log)
    calls = [(PROD_DB, DELETE), (STAGING_DB, READ), (SANDBOX_DB, DELETE), (PROD_POD, "delete")]

    def agent(n: int) -> None:
        caller = Caller(f"agent-{n}", interface="http")
        for i in range(50):
            checks.check(caller, *calls[i % len(calls)])

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.flush(timeout=30)
    assert stored_count(estate) == 300 and log.written == 300 and log.dropped == log.failed == 0
    assert {d.row.principal for d in estate.decisions(limit=1000)} == {f"agent-{n}" for n in range(6)}
    assert log.stop(timeout=10)


def test_stop_writes_what_is_queued(estate: Store) -> None:
    log = BatchedDecisionLog(estate, settings(batch_size=1000, flush_interval="1m")).start()
    checks = authority(estate, log)
    for _ in range(10):
        checks.check(Caller("ci"), PROD_DB, DELETE)
    assert log.stop(timeout=10)  # a minute's flush interval is cut short by the stop
    assert stored_count(estate) == 10


def test_full_queue_drops_the_oldest_and_counts_them(estate: Store) -> None:
    log = BatchedDecisionLog(estate, settings(max_queue=100))  # no writer yet: nothing leaves the queue
    checks = authority(estate, log)
    for i in range(130):
        checks.check(Caller(f"p{i:03d}"), PROD_DB, DELETE)  # returns although nobody drains the queue
    assert log.dropped == 30 and log.queued == 100
    log.start()
    assert log.flush(timeout=30)
    principals = sorted(d.row.principal for d in estate.decisions(limit=1000))
    assert principals == [f"p{i:03d}" for i in range(30, 130)]  # the newest 100 kept
    log.stop()


def test_a_broken_store_never_blocks_or_raises_into_record(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    populate(store)
    log = BatchedDecisionLog(store, settings(batch_size=5)).start()
    checks = authority(store, log)
    answer = checks.check(Caller("ci"), PROD_DB, DELETE)  # read before the store breaks
    assert log.flush(timeout=30) and log.written == 1
    store.close()  # every later write fails
    for _ in range(20):
        log.record(answer, Caller("ci"), datetime.now(UTC))
    assert log.flush(timeout=30)  # the failures were retried once and dropped, not waited on forever
    assert log.failed == 20 and log.written == 1
    assert log.stop(timeout=10)


def test_direct_log_writes_at_once_and_survives_a_broken_store(estate: Store) -> None:
    log = DirectDecisionLog(estate)
    answer = authority(estate, log).check(Caller("user:alice", interface="cli"), PROD_DB, DELETE)
    [entry] = estate.decisions()
    assert entry.row.target_id == PROD_DB and entry.row.label_snapshot == estate.label_snapshots([PROD_DB])[PROD_DB]
    estate.close()
    log.record(answer, Caller("user:alice"), datetime.now(UTC))
    assert log.failed == 1


def test_decision_log_for_follows_the_config(estate: Store) -> None:
    assert decision_log_for(config_from_dict({"decisions": {"enabled": False}}), estate) is None
    made = decision_log_for(config_from_dict({"decisions": {"batch_size": 3}}), estate)
    assert isinstance(made, BatchedDecisionLog) and made.batch_size == 3


# -- reads -------------------------------------------------------------------------------------
def checked(estate: Store) -> tuple[Query, list[CheckRecord]]:
    log = DirectDecisionLog(estate)
    checks = authority(estate, log)
    answers = [checks.check(Caller("ci", groups=("deployers",), interface="http"), PROD_DB, DELETE),
               checks.check(Caller("ci", interface="guard"), STAGING_DB, READ),
               checks.check(Caller("user:alice"), EKS_ALIAS, "delete"),
               checks.check(Caller("user:alice", mode="audit"), PROD_DB, DELETE)]
    return checks.query, answers


def test_list_decisions_filters_and_entries(estate: Store) -> None:
    query, answers = checked(estate)
    everything = list_decisions(query)["decisions"]
    assert len(everything) == 4 and everything[0]["mode"] == "audit" and everything[0]["would_block"]
    first = everything[-1]
    assert first["principal"] == "ci" and first["groups"] == ["deployers"] and first["interface"] == "http"
    assert first["decision"] == "deny" and first["rule"] == answers[0]["rule"] == "policy.production.delete"
    assert first["reasons"] == answers[0]["reasons"] and first["environment"] == "production"
    assert [d["principal"] for d in list_decisions(query, principal="user:alice")["decisions"]] == ["user:alice"] * 2
    assert [d["target"] for d in list_decisions(query, decision="allow")["decisions"]] == [STAGING_DB]
    # the EKS alias names the cluster k8s://prod-eu: asking by either form finds it
    assert [d["target"] for d in list_decisions(query, target="k8s://prod-eu")["decisions"]] == [EKS_ALIAS]
    assert [d["target"] for d in list_decisions(query, target=EKS_ALIAS)["decisions"]] == [EKS_ALIAS]
    assert len(list_decisions(query, target=PROD_DB)["decisions"]) == 2
    assert [d["mode"] for d in list_decisions(query, would_block=True)["decisions"]] == ["audit"]
    assert list_decisions(query, since="1h")["decisions"] == everything
    assert list_decisions(query, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat())["decisions"] == []


def test_list_decisions_pages_with_a_cursor(estate: Store) -> None:
    estate.record_decisions([row(T0 + timedelta(seconds=i), principal=f"p{i}") for i in range(7)])
    query = Query(CONFIG, estate)
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = list_decisions(query, limit=3, cursor=cursor)
        seen += [d["principal"] for d in page["decisions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{i}" for i in range(6, -1, -1)] and cursor is None


def test_label_snapshot_is_the_label_of_that_moment(estate: Store) -> None:
    log = DirectDecisionLog(estate)
    checks = authority(estate, log)
    checks.check(Caller("ci"), STAGING_DB, READ)
    before = estate.past_label(STAGING_DB, datetime.now(UTC))
    assert before is not None
    # the staging db is tagged production now: a new label, a new history entry
    tagged = Resource(STAGING_DB, "aws", "rds:db", "orders", "333333333333", {"Environment": "production"},
                      "333333333333/us-east-1", region="us-east-1")
    now = datetime.now(UTC)
    commit_scan(estate, Taxonomy(), ScanResult("tagged", [tagged]), now, now)
    checks.check(Caller("ci"), STAGING_DB, READ)
    after = estate.past_label(STAGING_DB, datetime.now(UTC))
    assert after is not None and after.row != before.row
    newer, older = list_decisions(checks.query, target=STAGING_DB)["decisions"]
    assert (older["label_snapshot"], older["environment"]) == (before.row, "staging")
    assert (newer["label_snapshot"], newer["environment"]) == (after.row, "production")
    assert after.entry.resolution.environment == "production"


@pytest.mark.parametrize(("field", "filters"), [
    ("decision", {"decision": "maybe"}), ("principal", {"principal": "  "}), ("since", {"since": "yesterday"}),
    ("target", {"target": "arn:aws:nonsense"}), ("limit", {"limit": 0}), ("limit", {"limit": 5000}),
    ("cursor", {"cursor": "!!!"}), ("cursor", {"cursor": "YWJj"}),  # base64 of "abc": not an id
])
def test_bad_filters_name_the_field_and_what_to_pass(estate: Store, field: str, filters: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest) as raised:
        list_decisions(Query(CONFIG, estate), **filters)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert any(word in str(raised.value) for word in ("pass", "one of", "between", "write", "neither"))


def test_would_block_report_counts_audit_non_allow_per_principal_and_environment(estate: Store) -> None:
    log = DirectDecisionLog(estate)
    shadow = authority(estate, log, mode="audit")
    for _ in range(3):
        answer = shadow.check(Caller("ci"), PROD_DB, DELETE)
        assert answer["mode"] == "audit" and answer["decision"] == "deny"
    shadow.check(Caller("ci"), STAGING_DB, READ)  # allow: nothing would have been stopped
    authority(estate, log).check(Caller("ci"), PROD_DB, DELETE)  # enforced: not a would-block
    shadow.check(Caller("bob"), PROD_POD, "delete")
    estate.record_decisions([row(datetime.now(UTC), principal="ci", decision="require_approval", mode="audit"),
                             row(T0 - timedelta(days=400), principal="old", mode="audit")])
    report = would_block_report(Query(CONFIG, estate), since="30d")
    assert report["total"] == 5
    assert report["by"] == [
        {"principal": "ci", "environment": "production", "decisions": {"deny": 3, "require_approval": 1}},
        {"principal": "bob", "environment": "production", "decisions": {"deny": 1, "require_approval": 0}},
    ]
    assert would_block_report(Query(CONFIG, estate))["total"] == 6 and report["since"] is not None
    assert [g["principal"] for g in would_block_report(Query(CONFIG, estate), principal="bob")["by"]] == ["bob"]


# -- the daemon's retention ------------------------------------------------------------------------
def test_daemon_purges_decisions_past_retention(estate: Store) -> None:
    config = config_from_dict({"decisions": {"retention": "7d"}})
    now = datetime.now(UTC)
    estate.record_decisions([row(now - timedelta(days=8)), row(now - timedelta(days=6)), row(now)])
    daemon = Daemon(config, estate, ScanMetrics(Metrics().registry), watch=False)
    assert daemon.purge_decisions() == 1
    assert sorted(d.row.at for d in estate.decisions()) == [now - timedelta(days=6), now]
    daemon.schedule()
    assert daemon.scheduler.get_job("purge-decisions") is not None
    off = Daemon(config_from_dict({"decisions": {"enabled": False}}), estate, ScanMetrics(Metrics().registry))
    off.schedule()
    assert off.scheduler.get_job("purge-decisions") is None


def test_require_approval_is_logged_with_its_approval_request(estate: Store) -> None:
    checks = authority(estate, DirectDecisionLog(estate))
    answer = checks.check(Caller("ci", interface="guard"), STAGING_DB, DELETE)
    assert answer["decision"] == "require_approval" and "approval" in answer
    [entry] = list_decisions(checks.query, decision="require_approval")["decisions"]
    assert entry["approval_id"] == answer["approval"]["id"] and entry["interface"] == "guard"
    assert not entry["would_block"]  # enforced, so it did block: not a shadow-mode entry
