"""Lookalikes read by environment: each resource row keeps its label's environment, and the stem index answers
the first few lookalikes of each environment without reading the rest.

Everything runs on a real SQLite file and a real PostgreSQL schema, written through the real pipeline; the answer
of the index read is compared with the same question answered from every same-stemmed row joined to its label.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.overrides import remove_override, set_override
from envlabel.service.core.pipeline import commit_changes
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.lookalikes import Lookalike, lookalike_statement
from envlabel.store.sql import Store
from tests.postgres_db import fresh_schema
from tests.test_lookalikes import (
    DEFAULT,
    PROD,
    PROD_SIBLING,
    SANDBOX,
    STAGING,
    UNLABELED,
    account,
    db,
    ou,
    populate,
    twins,
)

#: a stem shared across every environment, enough of each that a part fills its limit
MANY = [f"arn:aws:rds:us-east-1:{owner}:db:billing-{i:02}-db" for owner in
        ("222222222222", "333333333333", "444444444444", "555555555555") for i in range(7)]


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
    populate(opened, Taxonomy.from_config(DEFAULT))
    # billing-NN-db: one stem per NN, 4 environments each; billing-db: a stem of 28
    commit_changes(opened, Taxonomy(), "aws", [db(arn) for arn in MANY]
                   + [db(arn.replace(f"-{i:02}-", "-")[:-3] + f"-{i:02}") for i, arn in enumerate(MANY)])
    yield opened
    opened.close()


def stored_environments(store: Store) -> dict[str, tuple[str, str]]:
    """Each resource's kept environment beside its label's (``unknown`` for none)."""
    return {r[0]: (r[1], r[2]) for r in store._query(
        "SELECT r.id, r.label_environment, COALESCE(l.environment, 'unknown') FROM resources r "
        "LEFT JOIN labels l ON l.target = r.id")}


def agree(store: Store) -> None:
    pairs = stored_environments(store)
    assert pairs, "no resources"
    assert {t: p for t, p in pairs.items() if p[0] != p[1]} == {}


def reference(store: Store, stem: str, kind: str | None, exclude: str | None, limit: int, other_than: str | None,
              ranking: Sequence[str]) -> list[Lookalike]:
    """The question answered from every live row with ``stem`` joined to its label (the read before the index)."""
    rows = store._query("SELECT r.id, r.kind, r.name, COALESCE(l.environment, 'unknown') FROM resources r "
                        "LEFT JOIN labels l ON l.target = r.id WHERE r.stem = ? AND r.tombstoned_at IS NULL", (stem,))
    found = [Lookalike(*r) for r in rows if (kind is None or r[1] == kind) and r[0] != exclude
             and (other_than is None or r[3] == "unknown" or r[3] != other_than)]
    rank = {e: i for i, e in reversed(list(enumerate(ranking)))}
    return sorted(found, key=lambda x: (rank.get(x.environment, len(ranking)), x.id))[:limit]


# -- the kept environment ---------------------------------------------------------------------------
def test_every_resource_keeps_its_labels_environment(store: Store) -> None:
    pairs = stored_environments(store)
    assert pairs[PROD] == ("production", "production") and pairs[STAGING] == ("staging", "staging")
    assert pairs[UNLABELED] == ("unknown", "unknown")
    agree(store)


def test_a_relabel_an_override_and_a_return_move_the_kept_environment(store: Store) -> None:
    # the staging account moves under the production OU: its database is relabeled by the commit
    commit_changes(store, Taxonomy(), "aws", [Resource("333333333333", "aws", "aws:account", "acct-333333333333",
                                                       ou("Production").id, {}, "org")])
    assert stored_environments(store)[STAGING] == ("production", "production")
    # an override relabels one target, and its removal again
    query = Query(DEFAULT, store)
    set_override(query, SANDBOX, "staging", reason="migration test", author="tester")
    assert query.label(SANDBOX)["environment"] == "staging"
    assert stored_environments(store)[SANDBOX] == ("staging", "staging")
    assert (SANDBOX, "staging") in twins(query.label(PROD))
    remove_override(query, SANDBOX, author="tester", reason="done")
    assert stored_environments(store)[SANDBOX] == ("sandbox", "sandbox")
    # a target gone and back starts unlabeled, then labeled again
    commit_changes(store, Taxonomy(), "aws", [], gone=[PROD])
    commit_changes(store, Taxonomy(), "aws", [db(PROD)])
    assert stored_environments(store)[PROD] == ("production", "production")
    agree(store)


def test_the_staging_twin_moved_to_production_leaves_and_joins_the_lists(store: Store) -> None:
    query = Query(DEFAULT, store)
    assert (STAGING, "staging") in twins(query.label(PROD))
    commit_changes(store, Taxonomy(), "aws", [Resource("333333333333", "aws", "aws:account", "acct-333333333333",
                                                       ou("Production").id, {}, "org")])
    assert STAGING not in [t for t, _ in twins(query.label(PROD))]
    assert twins(query.label(SANDBOX))[:3] == [(PROD, "production"), (PROD_SIBLING, "production"),
                                               (STAGING, "production")]


def test_a_store_at_schema_7_gets_the_kept_environments_when_opened(store_url: str) -> None:
    store = open_store(store_url)
    populate(store, Taxonomy.from_config(DEFAULT))
    before = Query(DEFAULT, store).label(PROD)["lookalikes"]
    with store.transaction() as tx:  # back to schema 7: no kept environment, the stem index on (stem, kind)
        tx.execute("DROP INDEX resources_stem")
        tx.execute("ALTER TABLE resources DROP COLUMN label_environment")
        tx.execute("CREATE INDEX resources_stem ON resources (stem, kind)")
        tx.execute("DELETE FROM schema_version WHERE version = 8")
    store.close()
    store = open_store(store_url)
    try:
        assert store.schema_version == 8
        agree(store)
        assert Query(DEFAULT, store).label(PROD)["lookalikes"] == before
    finally:
        store.close()


# -- the index read -------------------------------------------------------------------------------
@pytest.mark.parametrize("ranking", [("production", "staging", "sandbox"), ("sandbox", "production"), (),
                                     ("staging", "unknown", "production"), ("production", "production", "staging")])
@pytest.mark.parametrize("other_than", [None, "production", "staging", "unknown", "development"])
@pytest.mark.parametrize("limit", [1, 3, 10])
def test_the_index_read_answers_as_every_row_joined_to_its_label(store: Store, ranking: tuple[str, ...],
                                                                 other_than: str | None, limit: int) -> None:
    """Ranked environments first, in order (a repeated one where it first appears), then unknown and any other
    environment by id; the label's own environment left out, unknown never; a part cut at the limit."""
    for stem, kind, exclude in (("billing-db", "rds:db", MANY[3]), ("billing-db", None, None),
                                ("billing-03-db", "rds:db", None), ("orders-db", None, PROD),
                                ("orders-db", "s3:bucket", None), ("no-such-db", None, None)):
        got = store.lookalikes(stem, kind, exclude, limit, other_than=other_than, ranking=ranking)
        assert got == reference(store, stem, kind, exclude, limit, other_than, ranking), (stem, kind, exclude)


def test_an_environment_outside_the_ranking_comes_after_it_with_unknown(store: Store) -> None:
    """A label of an environment the config no longer lists (sandbox here) still shows, after the ranked ones."""
    narrow = config_from_dict({"environments": ["production", "staging"]})
    body = Query(narrow, store).label(PROD)
    assert twins(body) == [(STAGING, "staging"), *sorted([(SANDBOX, "sandbox"), (UNLABELED, "unknown")])]


def test_the_lookalike_read_stays_on_the_covering_stem_index(tmp_path: Path) -> None:
    """SQLite's plan: every read of ``resources`` a search of the stem index alone (no table row, no scan)."""
    path = tmp_path / "envlabel.db"
    store = open_store(f"sqlite:///{path}")
    try:
        populate(store, Taxonomy())
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        for kind in ("rds:db", None):
            for other_than in ("production", None, "development"):
                statement, params = lookalike_statement("orders-db", kind, PROD, 10, other_than=other_than,
                                                        ranking=("production", "staging", "sandbox"))
                plan = [str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
                reads = [step for step in plan if step.startswith(("SEARCH resources", "SCAN resources"))]
                assert reads and all(step.startswith("SEARCH resources USING COVERING INDEX resources_stem (stem=?")
                                     for step in reads), plan


def test_accounts_keep_their_environment_too(store: Store) -> None:
    """Containers are resources like any other: an account's row keeps the environment its OU gives it."""
    pairs = stored_environments(store)
    assert pairs[account("222222222222", "Production").id] == ("production", "production")
    assert pairs[account("555555555555", None).id] == ("unknown", "unknown")
