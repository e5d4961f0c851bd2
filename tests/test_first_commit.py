"""A large first commit into an empty store reads nothing back (``Transaction.first_load``), copies its first labels'
history rows in SQL, and every relabel encodes labels chain by chain (``LabelEncoder``): what it stores must be what
the plain path stores, and what the labeler says, row for row.

A scan streaming its resources (a generator: of unknown length) takes the bulk path; the same resources as a short
list take the plain one. Both go into real SQLite files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.stems import stem
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Override, Resource, ScanError, ScanResult
from envlabel.service.core.pipeline import StreamLabeler, commit_scan
from envlabel.store import open_store
from envlabel.store.records import EncodedLabel
from envlabel.store.sql import Store
from envlabel.store.transaction import FIRST_LOAD_CACHE_KIB
from tests.estates import T0

TAX = Taxonomy.from_config(config_from_dict({}))
ROOT = "r-root"
PROD_OU = "ou-prod"
ACCOUNT = "222222222222"
OTHER = "333333333333"
VPC = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:vpc/vpc-1"
SCOPE = f"{ACCOUNT}/eu-west-1"
#: every column of every table a scan writes, serial ids left out
TABLES = {
    "resources": "id, source, provider, kind, name, parent, scope, region, path, tags, name_signal, declared, "
                 "aliases, digest, first_seen, updated_at, tombstoned_at, facts, stem, label_environment",
    "labels": "target, environment, decided_by, conflict, evidence, valid_until, labeled_at, scan_id",
    "label_history": "target, at, scan_id, event, before, environment, decided_by, conflict, evidence, valid_until",
    "fact_history": "target, at, scan_id, facts",
    "aliases": "alias, target",
    "scopes": "source, scope, last_ok",
    "scans": "id, source, started_at, finished_at, complete, resources, changed, removed, errors",
}
#: an override set before the first scan (on the other account), expiring: its expiry is every label's below it
OVERRIDE = Override(OTHER, "staging", "migration", "alice", T0 - timedelta(hours=1), T0 + timedelta(days=2))


def estate() -> list[Resource]:
    """Every kind of evidence: an OU whose name declares, tags that agree and disagree, a configured environment,
    name tokens only, an override with an expiry, nothing at all, an unobserved parent; facts and aliases."""
    resources = [
        Resource(ROOT, "aws", "aws:root", "Root", None, {}, "org", path="/Root"),
        Resource(PROD_OU, "aws", "aws:ou", "Production", ROOT, {}, "org", name_signal=True, path="/Root/Production"),
        Resource(ACCOUNT, "aws", "aws:account", "orders-prod", PROD_OU, {"Environment": "Prod-EU", "team": "a"}, "org",
                 aliases=(f"arn:aws:organizations::111111111111:account/o-x/{ACCOUNT}",)),
        Resource(OTHER, "aws", "aws:account", "search", ROOT, {"env": "dev"}, "org", declared="sandbox"),
        Resource(VPC, "aws", "ec2:vpc", "main", ACCOUNT, {"env": "prd"}, SCOPE, "eu-west-1"),
    ]
    for i in range(40):
        tags = ({"env": "dev", "Name": f"db-{i}"} if i % 7 == 3 else {"Environment": "production", "x": str(i % 3)}
                if i % 2 else {})
        parent = (VPC, ACCOUNT, OTHER, "never-seen-parent")[i % 4]
        name = ("orders-pre-prod-db", f"orders-stg-{i}", f"cache_{i}.prod", "prod")[i % 4]
        facts: dict[str, Any] = {"deletion_protection": i % 3 == 0, "backups": [i, "daily"]} if i % 5 else {}
        resources.append(Resource(f"arn:aws:rds:eu-west-1:{ACCOUNT}:db:db-{i:03d}", "aws", "rds:db", name, parent,
                                  tags, SCOPE, "eu-west-1", aliases=(f"db-{i}",) if i % 6 == 0 else (), facts=facts))
    return resources


def stream(resources: Iterable[Resource]) -> Iterator[Resource]:
    """A scan's resources as a scanner streams them: a generator, whose length is not known."""
    yield from resources


def rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted((tuple(r) for r in store._query(f"SELECT {columns} FROM {table}")), key=repr)
            for table, columns in TABLES.items()}


def indexes(store: Store) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in store._query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")]


def new_store(path: Path) -> Store:
    store = open_store(f"sqlite:///{path}")
    with store.transaction() as tx:
        tx.set_override(OVERRIDE)
    return store


def commit(store: Store, resources: Iterable[Resource], hours: int = 0) -> Any:
    at = T0 + timedelta(hours=hours)
    return commit_scan(store, TAX, ScanResult("aws", resources, scopes=frozenset({"org", SCOPE})), at, at)  # type: ignore[arg-type]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """(a store first written by a streamed scan: the bulk path, one first written from a short list)."""
    bulk, plain = new_store(tmp_path / "bulk.db"), new_store(tmp_path / "plain.db")
    try:
        yield bulk, plain
    finally:
        bulk.close()
        plain.close()


def test_a_streamed_first_commit_stores_what_the_plain_path_stores(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores
    fresh = indexes(plain)
    assert any(name == "resources_parent" for name, _ in fresh)  # the schema's indexes, as migrated
    first = commit(bulk, stream(estate()))
    assert first.written == first.label_changes == len(estate())
    second = commit(plain, estate())
    assert rows(bulk) == rows(plain)
    assert first.environments == second.environments == bulk.environment_counts("aws")
    assert first.environments["production"] > 0 and first.removed == second.removed == 0
    assert indexes(bulk) == indexes(plain) == fresh  # dropped and made again from their own definitions


def test_a_streamed_first_commit_stores_the_labelers_labels_stems_and_facts(stores: tuple[Store, Store]) -> None:
    bulk, _ = stores
    resources = estate()
    commit(bulk, stream(resources))
    stored = rows(bulk)
    labeler = Labeler(TAX, {r.id: r for r in resources}, {OVERRIDE.target: OVERRIDE})
    expected = {r.id: tuple(EncodedLabel.of(labeler.label(r))) for r in resources}
    assert {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in stored["labels"]} == expected
    assert {r[0]: (r[5], r[6], r[7], r[8], r[9]) for r in stored["label_history"]} == expected
    assert all(r[3] == "label" and r[4] is None for r in stored["label_history"])
    environments = {target: label[0] for target, label in expected.items()}
    assert environments[ACCOUNT] == "production" and environments[OTHER] == "staging"  # the override decides
    assert environments[ROOT] == "unknown"
    words = TAX.name_words()
    assert {r[0]: r[18] for r in stored["resources"]} == {r.id: stem(r.name, words) for r in resources}
    assert {r[18] for r in stored["resources"]} >= {"orders-db", ""}
    with_facts = {r.id for r in resources if r.facts}
    assert {r[0] for r in stored["fact_history"]} == with_facts and len(stored["fact_history"]) == len(with_facts)


def test_the_same_stream_again_writes_nothing(stores: tuple[Store, Store]) -> None:
    bulk, _ = stores
    commit(bulk, stream(estate()))
    before = rows(bulk)
    again = commit(bulk, stream(estate()), hours=1)
    assert (again.written, again.label_changes) == (0, 0)
    after = rows(bulk)
    assert {t: r for t, r in after.items() if t not in ("scopes", "scans")} == \
        {t: r for t, r in before.items() if t not in ("scopes", "scans")}


def test_a_first_commit_that_fails_midway_leaves_the_store_empty(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores

    def failing() -> Iterator[Resource]:
        yield from estate()
        raise RuntimeError("the scanner broke")

    with pytest.raises(RuntimeError, match="the scanner broke"):
        commit(bulk, failing())
    assert all(not r for t, r in rows(bulk).items())
    assert indexes(bulk) == indexes(plain)
    commit(bulk, stream(estate()))  # and the next one commits as a first one
    commit(plain, estate())
    assert rows(bulk) == rows(plain)


def test_a_first_load_is_only_a_large_write_into_a_store_without_resources(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores
    commit(plain, estate())
    for store, large, first in ((bulk, True, True), (bulk, False, False), (plain, True, False)):
        with store.transaction() as tx:
            before = tx.execute("PRAGMA cache_size").fetchone()[0]
            with tx.first_load(large) as answer:
                assert answer is first
                inside = tx.execute("PRAGMA cache_size").fetchone()[0]
                assert (inside == -FIRST_LOAD_CACHE_KIB) is first
            assert tx.execute("PRAGMA cache_size").fetchone()[0] == before


def test_an_incomplete_first_commit_streamed_stores_what_the_plain_path_stores(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores
    error = ScanError(SCOPE, "AccessDenied", "grant the role")
    for store, resources in ((bulk, stream(estate())), (plain, estate())):
        summary = commit_scan(store, TAX, ScanResult("aws", resources, [error], frozenset({"org"})), T0, T0)  # type: ignore[arg-type]
        assert not summary.complete and summary.held == summary.removed == 0
        assert summary.label_changes == len(estate())
    assert rows(bulk) == rows(plain)


@pytest.mark.postgres
def test_a_streamed_first_commit_into_postgresql_stores_what_sqlites_plain_path_stores(tmp_path: Path) -> None:
    from tests.postgres_db import fresh_schema

    with fresh_schema() as url:
        postgres, plain = new_store_at(url), new_store(tmp_path / "plain.db")
        try:
            first = commit(postgres, stream(estate()))
            commit(plain, estate())
            assert first.written == first.label_changes == len(estate())
            assert first.environments == plain.environment_counts("aws")
            assert rows(postgres) == rows(plain)
            again = commit(postgres, stream(estate()), hours=1)
            assert (again.written, again.label_changes) == (0, 0)
        finally:
            postgres.close()
            plain.close()


def new_store_at(url: str) -> Store:
    store = open_store(url)
    with store.transaction() as tx:
        tx.set_override(OVERRIDE)
    return store


def labeled_in_the_stream(store: Store, resources: Iterable[Resource]) -> StreamLabeler:
    """Commit ``resources`` streamed, and return the StreamLabeler that labeled them."""
    made: list[StreamLabeler] = []

    class Watched(StreamLabeler):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("envlabel.service.core.pipeline.StreamLabeler", Watched)
        commit(store, stream(resources))
    [labeler] = made
    return labeler


def test_a_first_load_labels_as_it_stores_what_comes_after_its_parents(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores
    labeler = labeled_in_the_stream(bulk, estate())
    # only what sits below a parent never observed is left to the relabel
    assert sorted(labeler.deferred) == sorted(r.id for r in estate() if r.parent == "never-seen-parent")
    assert labeler.labeled == len(estate()) - len(labeler.deferred)
    commit(plain, estate())
    assert rows(bulk) == rows(plain)


def test_children_before_their_parents_are_labeled_by_the_relabel(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores
    labeler = labeled_in_the_stream(bulk, reversed(estate()))  # every child before its parent: nearly all left
    assert len(labeler.deferred) > len(estate()) // 2
    commit(plain, estate())
    assert rows(bulk) == rows(plain)


def test_a_parent_forgotten_before_its_first_child_leaves_the_child_to_the_relabel(
        stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    bulk, plain = stores
    monkeypatch.setattr(StreamLabeler, "WINDOW", 2)
    monkeypatch.setattr(StreamLabeler, "KEEP", 1)
    resources = estate()
    # the VPC right after its account, then everything else, and what is in the VPC last: by then it is forgotten
    below_vpc = [r for r in resources if r.parent == VPC]
    late = [r for r in resources if r.parent != VPC] + below_vpc
    labeler = labeled_in_the_stream(bulk, late)
    assert VPC not in labeler.deferred  # its account was still remembered
    assert {r.id for r in below_vpc} <= set(labeler.deferred)
    assert ACCOUNT not in labeler.deferred and OTHER not in labeler.deferred
    commit(plain, estate())
    assert rows(bulk) == rows(plain)


def test_a_child_of_a_parent_left_to_the_relabel_is_left_too(stores: tuple[Store, Store]) -> None:
    bulk, plain = stores
    resources = estate()
    # the VPC before its account: its chain is not known in the stream, so neither is its children's
    vpc = next(r for r in resources if r.id == VPC)
    labeler = labeled_in_the_stream(bulk, [vpc, *(r for r in resources if r.id != VPC)])
    assert VPC in labeler.deferred
    assert {r.id for r in resources if r.parent == VPC} <= set(labeler.deferred)
    commit(plain, estate())
    assert rows(bulk) == rows(plain)
