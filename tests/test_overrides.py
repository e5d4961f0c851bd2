"""Overrides through the real CLI and the functions the HTTP API calls, on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from envlabel.config import load_config
from envlabel.errors import TargetError
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.errors import InvalidOverride, NoOverride
from envlabel.service.core.overrides import (
    list_overrides,
    relabel_lapsed,
    remove_override,
    set_override,
)
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.estates import ACCOUNT, BUCKET, DB, OU, T0, VPC, aws_estate, cli, scan_of, write_config


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def query(config_path: Path) -> Iterator[Query]:
    config = load_config(config_path, environ={})
    store = open_store(config.store)
    commit_scan(store, Taxonomy.from_config(config), scan_of(aws_estate()), T0, T0)
    yield Query(config, store)
    store.close()


def env_of(query: Query, target: str, at: object = None) -> str:
    body = query.label(target, now=at or T0)  # type: ignore[arg-type]
    return str(body["environment"])


def test_resource_override_decides_its_label(query: Query, config_path: Path) -> None:
    assert env_of(query, DB) == "production"  # the OU's name outranks the account's staging tag
    result = cli(config_path, "override", "set", DB, "sandbox", "--reason", "scratch copy", "--by", "alice")
    assert result.exit_code == 0, result.stderr
    assert f"{DB} is now sandbox (decided by override)" in result.stdout
    got = json.loads(cli(config_path, "get", DB, "--json").stdout)
    assert (got["environment"], got["decided_by"], got["conflict"]) == ("sandbox", "override", False)
    assert got["evidence"][0] == {"signal": "override", "environment": "sandbox", "source": DB,
                                  "detail": "override by alice: scratch copy"}
    # the override is on the database only: its parents keep their labels
    assert env_of(query, VPC) == "production"


def test_container_override_replaces_its_signal_for_the_subtree_only(query: Query) -> None:
    body = set_override(query, ACCOUNT, "sandbox", reason="account handed to the lab", author="bob", now=T0)
    assert body["relabeled"] == 4  # account, VPC, bucket, database
    for target in (ACCOUNT, VPC, BUCKET, DB):
        label = query.label(target, now=T0)
        assert label["environment"] == "sandbox", target
        # the OU "Production" above the account is hidden, so nothing disagrees
        assert label["evidence"][0]["signal"] == "override"
        assert all("Production" not in e["detail"] for e in label["evidence"])
    assert env_of(query, OU) == "production"
    assert json.loads(json.dumps(body))["label"]["decided_by"] == "override"


def test_signals_below_a_container_override_still_count(config_path: Path, query: Query) -> None:
    # the database's own tag is below the override: the most restrictive of the two wins
    commit_scan(query.store, query.taxonomy, scan_of(aws_estate(db_tags={"Environment": "prod"})), T0, T0)
    set_override(query, ACCOUNT, "sandbox", reason="lab", author="bob", now=T0)
    label = query.label(DB, now=T0)
    assert (label["environment"], label["decided_by"], label["conflict"]) == ("production", "tag", True)
    assert env_of(query, BUCKET) == "sandbox"


def test_removing_restores_and_every_change_is_kept(query: Query, config_path: Path) -> None:
    assert cli(config_path, "override", "set", f"arn:aws:organizations::111111111111:account/o-abc/{ACCOUNT}",
               "sandbox", "--reason", "lab", "--by", "bob").exit_code == 0
    listed = json.loads(cli(config_path, "override", "list", "--json").stdout)
    assert [(o["target"], o["environment"], o["author"]) for o in listed["overrides"]] == [
        (ACCOUNT, "sandbox", "bob")]
    assert "events" not in listed
    result = cli(config_path, "override", "rm", ACCOUNT, "--by", "carol", "--reason", "lab closed")
    assert result.exit_code == 0, result.stderr
    assert f"{ACCOUNT} is now production" in result.stdout
    assert json.loads(cli(config_path, "get", DB, "--json").stdout)["environment"] == "production"
    everything = json.loads(cli(config_path, "override", "list", "--all", "--json").stdout)
    assert everything["overrides"] == []
    assert [(e["action"], e["environment"], e["author"], e["reason"]) for e in everything["events"]] == [
        ("set", "sandbox", "bob", "lab"), ("rm", None, "carol", "lab closed")]
    text = cli(config_path, "override", "list", "--all").stdout
    assert "by carol: lab closed" in text and "set sandbox by bob: lab" in text


def test_unknown_environment_is_a_usage_error(query: Query, config_path: Path) -> None:
    result = cli(config_path, "override", "set", DB, "prod", "--reason", "r", "--by", "a")
    assert result.exit_code == 2
    assert "'prod' is not configured; use one of production, staging, sandbox" in result.stderr
    with pytest.raises(InvalidOverride):
        set_override(query, DB, "qa", reason="r", author="a")
    assert query.store.overrides() == {}


@pytest.mark.parametrize("args, message", [
    (["override", "set", "db-orders", "sandbox", "--reason", "r", "--by", "a"], "unrecognized target"),
    (["override", "set", DB, "sandbox", "--reason", " ", "--by", "a"], "needs a reason"),
    (["override", "set", DB, "sandbox", "--reason", "r", "--by", "a", "--expires", "soon"],
     "neither a duration"),
    (["override", "set", DB, "sandbox", "--reason", "r", "--by", "a", "--expires", "2020-01-01T00:00:00Z"],
     "is not in the future"),
])
def test_bad_override_requests_are_usage_errors(config_path: Path, args: list[str], message: str) -> None:
    result = cli(config_path, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_removing_a_missing_override_says_so(query: Query, config_path: Path) -> None:
    result = cli(config_path, "override", "rm", DB, "--by", "a")
    assert result.exit_code == 1
    assert "there is no override on" in result.stderr and "override list" in result.stderr
    with pytest.raises(NoOverride):
        remove_override(query, DB, author="a")
    with pytest.raises(TargetError):
        remove_override(query, "not a target", author="a")


def test_override_on_a_target_never_seen_applies_when_it_appears(query: Query, config_path: Path) -> None:
    new_db = "arn:aws:rds:us-east-1:222222222222:db:ledger"
    result = cli(config_path, "override", "set", new_db, "staging", "--reason", "migration", "--by", "dave",
                 "--json")
    body = json.loads(result.stdout)
    assert body["seen"] is False and "has not been seen by any scan yet" in body["note"]
    assert body["label"]["found"] is False
    ledger = Resource(new_db, "aws", "rds:db", "ledger", VPC, {}, "222222222222/us-east-1")
    commit_scan(query.store, query.taxonomy, scan_of([*aws_estate(), ledger]), T0, T0 + timedelta(minutes=1))
    label = query.label(new_db, now=T0 + timedelta(minutes=1))
    assert (label["environment"], label["decided_by"]) == ("staging", "override")


def test_override_on_an_unseen_container_relabels_its_children_at_once(query: Query) -> None:
    # a VPC whose account the scanner could not read (no organization access): only an override speaks for it
    orphan = Resource("arn:aws:ec2:us-east-1:333333333333:vpc/vpc-9", "aws", "ec2:vpc", "edge",
                      "333333333333", {}, "333333333333/us-east-1")
    commit_scan(query.store, query.taxonomy, scan_of([*aws_estate(), orphan]), T0, T0)
    assert env_of(query, orphan.id) == "unknown"
    body = set_override(query, "333333333333", "staging", reason="edge account", author="erin", now=T0)
    assert body["seen"] is False and body["relabeled"] == 1
    stored = query.store.get(orphan.id)
    assert stored is not None and stored.resolution is not None
    assert stored.resolution.environment == "staging"


def test_override_on_a_kubernetes_namespace_covers_its_objects(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path), environ={})
    store = open_store(config.store)
    cluster = Resource("k8s://c1", "kubernetes", "k8s:cluster", "c1", None, {}, "k8s://c1", declared="production")
    ns = Resource("k8s://c1/namespaces/payments", "kubernetes", "k8s:namespace", "payments", cluster.id, {},
                  "k8s://c1")
    deploy = Resource("k8s://c1/payments/deployments/api", "kubernetes", "k8s:deployment", "api", ns.id, {},
                      "k8s://c1")
    other = Resource("k8s://c1/namespaces/web", "kubernetes", "k8s:namespace", "web", cluster.id, {}, "k8s://c1")
    commit_scan(store, Taxonomy.from_config(config), scan_of([cluster, ns, deploy, other], "c1"), T0, T0)
    query = Query(config, store)
    set_override(query, "k8s://c1/ns/payments", "sandbox", reason="load test copy", author="fay", now=T0)
    assert env_of(query, "k8s://c1/payments/deploy/api") == "sandbox"
    assert env_of(query, other.id) == "production"
    assert list_overrides(query, now=T0)["overrides"][0]["target"] == ns.id
    store.close()


def test_expired_override_stops_counting_at_once(query: Query) -> None:
    expires = T0 + timedelta(hours=1)
    set_override(query, ACCOUNT, "sandbox", reason="lab for an hour", author="gus", expires_at=expires, now=T0)
    before = query.label(DB, now=T0 + timedelta(minutes=59))
    assert before["environment"] == "sandbox"
    # no scan, no relabel in between: the read itself sees the override has lapsed
    after = query.label(DB, now=expires)
    assert (after["environment"], after["decided_by"]) == ("production", "inherited")
    stored = query.store.get(DB)
    assert stored is not None and stored.resolution is not None and stored.resolution.environment == "sandbox"
    assert list_overrides(query, now=expires)["overrides"] == []
    assert list_overrides(query, include_all=True, now=expires)["overrides"][0]["active"] is False
    # the sweep persists it (for the subtree: every label the override took part in)
    assert relabel_lapsed(query.store, query.taxonomy, now=expires) == 4
    assert relabel_lapsed(query.store, query.taxonomy, now=expires) == 0
    stored = query.store.get(DB)
    assert stored is not None and stored.resolution is not None
    assert (stored.resolution.environment, stored.resolution.valid_until) == ("production", None)


def test_next_scan_persists_an_expiry(query: Query) -> None:
    set_override(query, DB, "sandbox", reason="r", author="a", expires_at=T0 + timedelta(hours=1), now=T0)
    summary = commit_scan(query.store, query.taxonomy, scan_of(aws_estate()), T0, T0 + timedelta(hours=2))
    assert summary.label_changes == 1
    stored = query.store.get(DB)
    assert stored is not None and stored.resolution is not None
    assert stored.resolution.environment == "production"


def test_expires_accepts_a_duration_or_a_time(query: Query, config_path: Path) -> None:
    body = json.loads(cli(config_path, "override", "set", DB, "sandbox", "--reason", "r", "--by", "a",
                          "--expires", "2h", "--json").stdout)
    assert body["label"]["environment"] == "sandbox" and body["override"]["expires_at"] is not None
    year = datetime.now(UTC).year + 2  # within the 3650d an expiry may lie ahead
    body = json.loads(cli(config_path, "override", "set", DB, "staging", "--reason", "r", "--by", "a",
                          "--expires", f"{year}-01-31T12:00:00Z", "--json").stdout)
    assert body["override"]["expires_at"] == f"{year}-01-31T12:00:00.000000Z"
    assert body["label"]["evidence"][0]["detail"].endswith(f"expires {year}-01-31T12:00:00+00:00")
