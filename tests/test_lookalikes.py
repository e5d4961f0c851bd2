"""Lookalikes: the same database in another environment, named the same once environment words are stripped.

The twins (orders-db in production, orders-stg-db in staging, orders-db in sandbox, one in an account no OU
labels) are committed through the real pipeline into a real SQLite file and a real PostgreSQL schema; the label
is read through the query layer, the check through the Authority, and ``GET /v1/label`` over the real server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.config import Config, config_from_dict
from envlabel.labelers.stems import Stemmer, fingerprint, stem
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.authority import Authority, Caller
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_changes, commit_scan
from envlabel.service.core.query import Query, name_of_id
from envlabel.store import open_store
from envlabel.store.lookalikes import lookalike_statement
from envlabel.store.sql import Store
from tests.postgres_db import fresh_schema

ROOT = "arn:aws:organizations::111111111111:root/o-test/r-0001"
PROD = "arn:aws:rds:us-east-1:222222222222:db:orders-db"
PROD_SIBLING = "arn:aws:rds:us-east-1:222222222222:db:orders-prod-db"  # the same stem in the same environment
PROD_ALONE = "arn:aws:rds:us-east-1:222222222222:db:prod"  # nothing left once environment words are stripped
STAGING = "arn:aws:rds:us-east-1:333333333333:db:orders-stg-db"
SANDBOX = "arn:aws:rds:us-east-1:444444444444:db:orders-db"
SANDBOX_BUCKET = "arn:aws:s3:::orders-db"  # the same name, another kind
UNLABELED = "arn:aws:rds:us-east-1:555555555555:db:orders-db"  # an account no OU labels: unknown
NEVER_SEEN = "arn:aws:rds:us-east-1:999999999999:db:orders-db"
DEFAULT = config_from_dict({})


# -- the stem -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "expected"), [
    ("orders-db", "orders-db"), ("orders-prod-db", "orders-db"), ("orders-stg-db", "orders-db"),
    ("Orders_Staging.DB", "orders-db"), ("prod-orders-db", "orders-db"), ("orders db sandbox", "orders-db"),
    ("orders-pre-prod-db", "orders-db"), ("orders/dev/db", "orders-db"),
    ("prod", ""), ("prod-stg", ""), ("products-db", "products-db"), ("", ""),
])
def test_stem_strips_environment_words(name: str, expected: str) -> None:
    assert stem(name, Taxonomy().name_words()) == expected
    assert Stemmer.of(Taxonomy())(name) == expected


def test_name_tokens_are_stripped_and_change_the_fingerprint() -> None:
    plain, blue = Taxonomy(), Taxonomy(name_tokens={"staging": ["blue"]})
    assert Stemmer.of(blue)("orders-blue-db") == "orders-db" != Stemmer.of(plain)("orders-blue-db")
    assert Stemmer.of(blue).fingerprint != Stemmer.of(plain).fingerprint
    assert fingerprint(["b", "a"]) == fingerprint(["a", "b"])


@pytest.mark.parametrize(("target", "name"), [
    (PROD, "orders-db"), ("arn:aws:s3:::orders-db", "orders-db"),
    ("arn:aws:ecs:us-east-1:222222222222:service/prod-cluster/orders-api", "orders-api"),
    ("k8s://prod-eu/payments/deployments/api", "api"),
    ("//cloudresourcemanager.googleapis.com/projects/orders-prod", "orders-prod"), ("222222222222", "222222222222"),
])
def test_a_never_seen_target_is_named_by_its_last_segment(target: str, name: str) -> None:
    assert name_of_id(target) == name


# -- the estate, through the real pipeline ---------------------------------------------------------
def ou(name: str) -> Resource:
    return Resource(f"arn:aws:organizations::111111111111:ou/o-test/ou-{name.lower()}", "aws", "aws:ou", name,
                    ROOT, {}, "org", name_signal=True, path=f"/Root/{name}")


def account(number: str, ou_name: str | None) -> Resource:
    return Resource(number, "aws", "aws:account", f"acct-{number}", ou(ou_name).id if ou_name else ROOT, {}, "org")


def db(arn: str, kind: str = "rds:db") -> Resource:
    owner = arn.split(":")[4] or "444444444444"
    return Resource(arn, "aws", kind, arn.rpartition(":")[2], owner, {"app": "orders"}, f"{owner}/us-east-1",
                    region="us-east-1")


def populate(store: Store, taxonomy: Taxonomy) -> None:
    """The organization by a scan, the databases by watch-style changes (both paths write stems)."""
    now = utcnow()
    org = [Resource(ROOT, "aws", "aws:root", "Root", None, {}, "org", path="/Root"),
           ou("Production"), ou("Staging"), ou("Sandbox"), account("222222222222", "Production"),
           account("333333333333", "Staging"), account("444444444444", "Sandbox"), account("555555555555", None)]
    commit_scan(store, taxonomy, ScanResult("aws", org, scopes=frozenset({"org"})), now, now)
    twins = [db(PROD), db(PROD_SIBLING), db(PROD_ALONE), db(STAGING), db(SANDBOX), db(SANDBOX_BUCKET, "s3:bucket"),
             db(UNLABELED)]
    commit_changes(store, taxonomy, "aws", twins, now=now)


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
    yield opened
    opened.close()


def twins(body: Any) -> list[tuple[str, str]]:
    return [(t["target"], t["environment"]) for t in body["lookalikes"]]


# -- the label ------------------------------------------------------------------------------------
def test_the_production_database_lists_its_twins_in_other_environments(store: Store) -> None:
    body = Query(DEFAULT, store).label(PROD)
    assert body["environment"] == "production"
    # staging, then sandbox, then unknown (environment rank), never the production sibling nor the bucket
    assert twins(body) == [(STAGING, "staging"), (SANDBOX, "sandbox"), (UNLABELED, "unknown")]
    first = body["lookalikes"][0]
    assert first == {"target": STAGING, "environment": "staging", "kind": "rds:db", "name": "orders-stg-db",
                     "note": f"orders-stg-db also exists in staging: {STAGING}"}
    assert body["lookalikes"][2]["note"] == f"orders-db also exists with no known environment: {UNLABELED}"


def test_the_staging_twin_lists_production_first(store: Store) -> None:
    assert twins(Query(DEFAULT, store).label(STAGING)) == [
        (PROD, "production"), (PROD_SIBLING, "production"), (SANDBOX, "sandbox"), (UNLABELED, "unknown")]


def test_a_name_of_environment_words_alone_has_no_lookalikes(store: Store) -> None:
    assert Query(DEFAULT, store).label(PROD_ALONE)["lookalikes"] == []


def test_a_never_seen_target_matches_its_last_segment_in_any_kind(store: Store) -> None:
    body = Query(DEFAULT, store).label(NEVER_SEEN)
    assert not body["found"]
    assert twins(body) == [(PROD, "production"), (PROD_SIBLING, "production"), (STAGING, "staging"),
                           (SANDBOX, "sandbox"), (SANDBOX_BUCKET, "sandbox"), (UNLABELED, "unknown")]


def test_the_batch_agrees_with_one_label_at_a_time(store: Store) -> None:
    query = Query(DEFAULT, store)
    targets = [PROD, STAGING, SANDBOX, PROD_SIBLING, PROD_ALONE, NEVER_SEEN, SANDBOX_BUCKET, PROD, "222222222222"]
    assert query.labels(targets) == [query.label(t) for t in targets]


def test_the_batch_holds_ten_lookalikes_each_however_many_share_a_stem(store: Store) -> None:
    many = [f"arn:aws:rds:us-east-1:333333333333:db:orders-db-{i:02}" for i in range(12)]
    commit_changes(store, Taxonomy(), "aws", [db(arn) for arn in many])  # orders-db-NN: a stem of its own
    query = Query(DEFAULT, store)
    sandbox = "arn:aws:rds:us-east-1:444444444444:db:orders-db-00"
    commit_changes(store, Taxonomy(), "aws", [db(sandbox)])
    for body in query.labels([*many[:3], sandbox]):
        assert len(body["lookalikes"]) <= 10
    assert [t for t, _ in twins(query.labels([sandbox])[0])] == [many[0]]
    assert twins(query.labels([many[0]])[0]) == twins(query.label(many[0])) == [(sandbox, "sandbox")]


def test_off_for_a_comparison_lists_nothing(store: Store) -> None:
    body = Query(DEFAULT, store, lookalikes=False).label(PROD)
    assert "lookalikes" not in body


def test_a_tombstoned_twin_is_not_listed(store: Store) -> None:
    commit_changes(store, Taxonomy(), "aws", [], gone=[STAGING])
    assert twins(Query(DEFAULT, store).label(PROD)) == [(SANDBOX, "sandbox"), (UNLABELED, "unknown")]


def test_a_twin_relabeled_into_the_same_environment_is_no_longer_listed(store: Store) -> None:
    moved = Resource("333333333333", "aws", "aws:account", "acct-333333333333", ou("Production").id, {}, "org")
    commit_changes(store, Taxonomy(), "aws", [moved])
    assert twins(Query(DEFAULT, store).label(PROD)) == [(SANDBOX, "sandbox"), (UNLABELED, "unknown")]


def test_the_check_carries_the_lookalikes(store: Store) -> None:
    answer = Authority(Query(DEFAULT, store)).check(Caller(), PROD, "rds:DeleteDBInstance")
    assert answer["decision"] == "deny"
    assert [t["target"] for t in answer["lookalikes"]] == [STAGING, SANDBOX, UNLABELED]


# -- re-stemming ----------------------------------------------------------------------------------
def test_renaming_a_synonym_re_stems_the_store_on_the_next_query(store: Store) -> None:
    renamed = config_from_dict({"synonyms": {"staging": ["stage", "stgx", "uat"]}})  # stg is no synonym now
    assert Query(renamed, store).label(PROD)["lookalikes"][0]["target"] == SANDBOX  # orders-stg-db: its own stem
    assert store.stems_fingerprint() == Stemmer.of(Taxonomy.from_config(renamed)).fingerprint
    assert Query(DEFAULT, store).label(PROD)["lookalikes"][0]["target"] == STAGING  # and back


def test_a_name_token_in_the_config_finds_a_twin_it_did_not(store: Store) -> None:
    blue = "arn:aws:rds:us-east-1:333333333333:db:orders-blue-db"
    commit_changes(store, Taxonomy(), "aws", [db(blue)])
    assert blue not in [t for t, _ in twins(Query(DEFAULT, store).label(PROD))]
    tokened = config_from_dict({"name_tokens": {"staging": ["blue"]}})
    assert (blue, "staging") in twins(Query(tokened, store).label(PROD))


def test_a_commit_with_other_words_re_stems_everything_first(store: Store) -> None:
    """A scan run with another config (another process) re-stems in its own commit: no row keeps a stem of
    words ``meta`` does not name."""
    renamed = Taxonomy(synonyms={"staging": ["stgx"]})
    commit_changes(store, renamed, "aws", [db("arn:aws:rds:us-east-1:444444444444:db:orders-stgx-db")])
    assert store.stems_fingerprint() == Stemmer.of(renamed).fingerprint
    stems = dict(store._query("SELECT id, stem FROM resources"))
    assert stems[STAGING] == "orders-stg-db" and stems["arn:aws:rds:us-east-1:444444444444:db:orders-stgx-db"] \
        == "orders-db"


def test_a_store_stemmed_by_no_one_is_stemmed_by_the_first_query(store: Store) -> None:
    """A store migrated to schema 4 holds no stems and no fingerprint: the first Query computes them."""
    with store.transaction() as tx:
        tx.execute("UPDATE resources SET stem = NULL")
        tx.execute("DELETE FROM meta")
    assert store.stems_fingerprint() is None
    assert twins(Query(DEFAULT, store).label(PROD))[0] == (STAGING, "staging")


# -- the index ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rds:db", None])
def test_the_lookalike_read_uses_the_stem_index(tmp_path: Path, kind: str | None) -> None:
    path = tmp_path / "envlabel.db"
    store = open_store(f"sqlite:///{path}")
    try:
        populate(store, Taxonomy())
    finally:
        store.close()
    statement, params = lookalike_statement("orders-db", kind, PROD, 10, other_than="production",
                                            ranking=("production", "staging", "sandbox"))
    with sqlite3.connect(path) as conn:
        plan = [str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
    assert any("INDEX resources_stem" in step for step in plan), plan
    # each part of the statement searches the stem index; a SCAN left is of a part's own few rows, not a table
    assert not any(step.startswith(("SCAN resources", "SCAN r ", "SCAN labels", "SCAN l ")) for step in plan), plan


# -- over HTTP ------------------------------------------------------------------------------------
def serving_config(store_url: str) -> Config:
    return config_from_dict({"store": store_url})


def test_get_label_over_http_shows_the_staging_twin(store: Store, store_url: str) -> None:
    from envlabel.service.daemon.server import BackgroundServer

    with BackgroundServer(serving_config(store_url), store) as server, httpx.Client(base_url=server.url) as client:
        body = client.get("/v1/label", params={"target": PROD}).json()
        batch = client.post("/v1/labels", json={"targets": [PROD, NEVER_SEEN]})
    assert body["environment"] == "production"
    assert body["lookalikes"][0]["note"] == f"orders-stg-db also exists in staging: {STAGING}"
    assert twins(body) == [(STAGING, "staging"), (SANDBOX, "sandbox"), (UNLABELED, "unknown")]
    assert batch.status_code == 200, batch.text
    assert twins(batch.json()["labels"][0]) == twins(body)
