"""The scan -> store -> label pipeline on a real SQLite file, with hand-built observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanError, ScanResult
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.sql import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TAX = Taxonomy()


def estate(extra_tag: str = "dev") -> list[Resource]:
    ou = Resource("ou-prod", "aws", "aws:ou", "Production", None, {}, "org", name_signal=True,
                  path="/Root/Production")
    acct = Resource("222222222222", "aws", "aws:account", "orders-prod", "ou-prod", {}, "org")
    vpc = Resource("arn:aws:ec2:us-east-1:222222222222:vpc/vpc-1", "aws", "ec2:vpc", "main",
                   "222222222222", {}, "222222222222/us-east-1")
    db = Resource("arn:aws:rds:us-east-1:222222222222:db:orders", "aws", "rds:db", "orders", vpc.id,
                  {"Environment": extra_tag}, "222222222222/us-east-1")
    return [ou, acct, vpc, db]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")


def test_labels_inherit_and_conflict(store: Store) -> None:
    summary = commit_scan(store, TAX, ScanResult("aws", estate(), scopes=frozenset({"org"})), T0, T0)
    assert summary.complete and summary.resources == 4 and summary.label_changes == 4
    query = Query(config_from_dict({}), store)
    body = query.label("arn:aws:rds:us-east-1:222222222222:db:orders", now=T0)
    assert body["environment"] == "production"
    assert body["conflict"] is True
    assert body["decided_by"] == "inherited"
    assert {e["signal"] for e in body["evidence"]} == {"tag", "inherited"}


def test_rescan_unchanged_writes_nothing(store: Store) -> None:
    commit_scan(store, TAX, ScanResult("aws", estate()), T0, T0)
    again = commit_scan(store, TAX, ScanResult("aws", estate()), T0, T0 + timedelta(minutes=5))
    assert (again.written, again.label_changes, again.removed) == (0, 0, 0)


def test_incomplete_scan_removes_nothing(store: Store) -> None:
    commit_scan(store, TAX, ScanResult("aws", estate()), T0, T0)
    partial = ScanResult("aws", estate()[:2], [ScanError("222222222222/us-east-1", "AccessDenied")])
    summary = commit_scan(store, TAX, partial, T0, T0 + timedelta(minutes=5))
    assert summary.removed == 0
    assert store.get("arn:aws:rds:us-east-1:222222222222:db:orders") is not None
    complete = commit_scan(store, TAX, ScanResult("aws", estate()[:2]), T0, T0 + timedelta(minutes=10))
    assert complete.removed == 2
    gone = store.get("arn:aws:rds:us-east-1:222222222222:db:orders")
    assert gone is not None and gone.tombstoned_at is not None


def test_killed_mid_scan_keeps_previous_state(store: Store) -> None:
    commit_scan(store, TAX, ScanResult("aws", estate("dev")), T0, T0)

    def exploding() -> object:
        yield from estate("prod")
        raise KeyboardInterrupt  # the process dies half way through the commit

    with pytest.raises(KeyboardInterrupt):
        commit_scan(store, TAX, ScanResult("aws", exploding()), T0, T0)  # type: ignore[arg-type]
    stored = store.get("arn:aws:rds:us-east-1:222222222222:db:orders")
    assert stored is not None and stored.resource.tags == {"Environment": "dev"}


def test_subtree_relabel_after_override(store: Store) -> None:
    from envlabel.model import Override
    from envlabel.service.core.pipeline import relabel_subtree

    commit_scan(store, TAX, ScanResult("aws", estate()), T0, T0)
    with store.transaction() as tx:
        tx.set_override(Override("222222222222", "sandbox", "migrating", "alice", T0))
    changes = relabel_subtree(store, TAX, ["222222222222"], T0)
    assert changes == 3  # the account, its VPC and the database; the OU above is untouched
    stored = store.get("arn:aws:rds:us-east-1:222222222222:db:orders")
    assert stored is not None and stored.resolution is not None
    assert stored.resolution.environment == "sandbox"
