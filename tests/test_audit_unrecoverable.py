"""The ``unrecoverable`` audit finding over a real store (SQLite, PostgreSQL) filled by the real scan pipeline.

Production resources whose scanned recovery facts say a delete today could not be undone get one high finding
each, with the command that turns on what makes it recoverable; the same resource with a way back (a snapshot,
versioning, a Retain volume), a replica, a staging twin, or facts that are not known, gets none.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import config_from_dict
from envlabel.model import Resource, ScanResult
from envlabel.service.core.audit import findings, format_table, to_sarif
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.targets import GCP_CRM
from tests.postgres_db import fresh_schema
from tests.test_audit import TAX

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
PROD, STG = "222222222222", "333333333333"
NO_BACKUPS = {"deletion_protection": False, "backup_retention_days": 0, "latest_snapshot": None,
              "read_replica_of": None, "cluster": None}
SNAPSHOT = {"id": "orders-db-manual-1", "at": "2026-12-01T03:00:00Z", "kind": "manual"}


def aws(rid: str, kind: str, name: str, account: str, facts: dict[str, Any]) -> Resource:
    return Resource(rid, "aws", kind, name, account, {}, f"{account}/eu-west-1", region="eu-west-1", facts=facts)


def rds(account: str, name: str, facts: dict[str, Any]) -> Resource:
    return aws(f"arn:aws:rds:eu-west-1:{account}:db:{name}", "rds:db", name, account, facts)


def estate() -> list[Resource]:
    accounts = [Resource(PROD, "aws", "aws:account", "shop", None, {"Environment": "production"}, "org"),
                Resource(STG, "aws", "aws:account", "shop-stg", None, {"Environment": "staging"}, "org")]
    return [*accounts,
            rds(PROD, "orders-db", NO_BACKUPS),
            rds(PROD, "orders-db-snap", {**NO_BACKUPS, "latest_snapshot": SNAPSHOT}),
            rds(PROD, "orders-db-replica", {**NO_BACKUPS, "read_replica_of": "orders-db"}),
            rds(PROD, "orders-db-protected", {**NO_BACKUPS, "deletion_protection": True}),
            rds(PROD, "orders-db-unread", {"unreadable": ["deletion_protection", "backup_retention_days",
                                                          "latest_snapshot"]}),
            rds(PROD, "orders-db-nofacts", {}),
            rds(STG, "orders-db", NO_BACKUPS),  # the staging twin: its loss is not a production loss
            aws("arn:aws:s3:::orders-exports", "s3:bucket", "orders-exports", PROD,
                {"versioning": "Suspended", "object_lock": False, "replication": False, "expiration_days": None}),
            aws("arn:aws:s3:::orders-archive", "s3:bucket", "orders-archive", PROD,
                {"versioning": "Enabled", "object_lock": False, "replication": False, "expiration_days": None}),
            aws(f"arn:aws:dynamodb:eu-west-1:{PROD}:table/carts", "dynamodb:table", "carts", PROD,
                {"deletion_protection": False, "point_in_time_recovery": False, "latest_backup": None}),
            aws(f"arn:aws:dynamodb:eu-west-1:{PROD}:table/sessions", "dynamodb:table", "sessions", PROD,
                {"deletion_protection": False, "point_in_time_recovery": True, "latest_backup": None})]


def cluster() -> list[Resource]:
    root = Resource("k8s://prod-eu", "kubernetes", "k8s:cluster", "prod-eu", None, {}, "prod-eu",
                    declared="production")
    ns = Resource("k8s://prod-eu/namespaces/shop", "kubernetes", "k8s:namespaces", "shop", root.id, {}, "prod-eu")

    def claim(name: str, policy: str) -> Resource:
        return Resource(f"k8s://prod-eu/shop/persistentvolumeclaims/{name}", "kubernetes",
                        "k8s:persistentvolumeclaims", name, ns.id, {}, "prod-eu",
                        facts={"reclaim_policy": policy, "storage_class": "gp3", "volume": f"pvc-{name}"})
    return [root, ns, claim("data-orders-0", "Delete"), claim("data-ledger-0", "Retain")]


def gcp() -> list[Resource]:
    project = Resource(f"{GCP_CRM}projects/shop-prod", "gcp", "gcp:project", "shop-prod", None,
                       {"environment": "production"}, "projects/shop-prod")
    sql = Resource("//cloudsql.googleapis.com/projects/shop-prod/instances/orders", "gcp", "sqladmin.Instance",
                   "orders", project.id, {}, "projects/shop-prod",
                   facts={"deletion_protection": False, "backups_enabled": False})
    kept = Resource("//storage.googleapis.com/projects/_/buckets/shop-invoices", "gcp", "storage.Bucket",
                    "shop-invoices", project.id, {}, "projects/shop-prod", facts={"versioning": False,
                                                                                  "soft_delete_days": 7})
    gone = Resource("//storage.googleapis.com/projects/_/buckets/shop-exports", "gcp", "storage.Bucket",
                    "shop-exports", project.id, {}, "projects/shop-prod", facts={"versioning": False,
                                                                                 "soft_delete_days": 0})
    return [project, sql, kept, gone]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'envlabel.db'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def query(store_url: str) -> Query:
    store = open_store(store_url)
    resources = estate()
    commit_scan(store, TAX, ScanResult("aws", resources, scopes=frozenset(r.scope for r in resources)), T0, T0)
    commit_scan(store, TAX, ScanResult("prod-eu", cluster(), scopes=frozenset({"prod-eu"})), T0, T0)
    commit_scan(store, TAX, ScanResult("gcp", gcp(), scopes=frozenset({"projects/shop-prod"})), T0, T0)
    config = {"sources": [{"name": "aws", "type": "aws"}, {"name": "gcp", "type": "gcp", "organization": "123456"},
                          {"name": "prod-eu", "type": "kubernetes", "environment": "production"}]}
    return Query(config_from_dict(config), store)


def unrecoverable(query: Query) -> dict[str, dict[str, Any]]:
    return {f["target"]: f for f in findings(query, kind="unrecoverable", now=NOW)}


def test_only_production_resources_without_a_way_back_are_reported(query: Query) -> None:
    found = unrecoverable(query)
    assert sorted(found) == [
        "//cloudsql.googleapis.com/projects/shop-prod/instances/orders",
        "//storage.googleapis.com/projects/_/buckets/shop-exports",
        f"arn:aws:dynamodb:eu-west-1:{PROD}:table/carts",
        f"arn:aws:rds:eu-west-1:{PROD}:db:orders-db",
        "arn:aws:s3:::orders-exports",
        "k8s://prod-eu/shop/persistentvolumeclaims/data-orders-0",
    ]
    assert {f["severity"] for f in found.values()} == {"high"}
    assert {f["environment"] for f in found.values()} == {"production"}


def test_the_rds_finding_says_why_and_carries_the_command(query: Query) -> None:
    finding = unrecoverable(query)[f"arn:aws:rds:eu-west-1:{PROD}:db:orders-db"]
    assert "deletion protection is off" in finding["message"]
    assert "automated backups are off" in finding["message"]
    assert "no snapshot" in finding["message"]
    assert finding["remediation"]["tags"] == {}
    assert finding["remediation"]["command"] == (
        "aws rds modify-db-instance --region eu-west-1 --db-instance-identifier orders-db --deletion-protection "
        "--backup-retention-period 7 --apply-immediately")


def test_commands_for_buckets_tables_and_claims(query: Query) -> None:
    found = unrecoverable(query)
    assert found["arn:aws:s3:::orders-exports"]["remediation"]["command"] == (
        "aws s3api put-bucket-versioning --bucket orders-exports --versioning-configuration Status=Enabled")
    assert "update-continuous-backups --region eu-west-1 --table-name carts --point-in-time-recovery-specification " \
           "PointInTimeRecoveryEnabled=true" in found[f"arn:aws:dynamodb:eu-west-1:{PROD}:table/carts"][
               "remediation"]["command"]
    claim = found["k8s://prod-eu/shop/persistentvolumeclaims/data-orders-0"]
    assert "reclaim policy Delete" in claim["message"]
    assert claim["remediation"]["command"] == (
        "kubectl --context prod-eu patch pv pvc-data-orders-0 -p "
        "'{\"spec\":{\"persistentVolumeReclaimPolicy\":\"Retain\"}}'")


def test_renderings_carry_the_new_kind(query: Query) -> None:
    rows = findings(query, kind="unrecoverable", now=NOW)
    table = format_table(rows)
    assert "unrecoverable" in table and "$ aws rds modify-db-instance" in table
    rule_ids = [r["id"] for r in to_sarif(rows)["runs"][0]["tool"]["driver"]["rules"]]
    assert "unrecoverable" in rule_ids
    assert all(r["ruleId"] == "unrecoverable" for r in to_sarif(rows)["runs"][0]["results"])


def test_gcp_commands(query: Query) -> None:
    found = unrecoverable(query)
    assert found["//cloudsql.googleapis.com/projects/shop-prod/instances/orders"]["remediation"]["command"] == (
        "gcloud sql instances patch orders --project shop-prod --deletion-protection --backup-start-time=03:00")
    assert found["//storage.googleapis.com/projects/_/buckets/shop-exports"]["remediation"]["command"] == (
        "gcloud storage buckets update gs://shop-exports --versioning")
