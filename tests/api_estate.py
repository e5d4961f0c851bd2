"""A small hand-built estate for the API, MCP and check tests, committed through the real pipeline.

Production and staging hold twins: a database called ``orders`` with the same name, kind and
tags in each, told apart only by the OU its account sits in, which is the accident envlabel
exists to prevent.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from envlabel.config import Config, config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.store.sql import Store

PROD_DB = "arn:aws:rds:us-east-1:222222222222:db:orders"
STAGING_DB = "arn:aws:rds:us-east-1:333333333333:db:orders"  # the twin
SANDBOX_DB = "arn:aws:rds:us-east-1:444444444444:db:orders"
UNLABELED = "arn:aws:s3:::shared-assets-555555555555"
STALE_DB = "arn:aws:rds:us-east-1:666666666666:db:legacy"  # tagged sandbox, last seen two days ago
GONE_DB = "arn:aws:rds:us-east-1:777777777777:db:retired"  # tombstoned by a later complete scan
NEVER_SEEN = "arn:aws:rds:us-east-1:999999999999:db:ghost"
PROD_POD = "k8s://prod-eu/payments/deployments/api"
EKS_ALIAS = "arn:aws:eks:eu-west-1:222222222222:cluster/prod-eu"  # another id of the cluster k8s://prod-eu

READER_TOKEN, ADMIN_TOKEN = "reader-secret-token-for-tests", "admin-secret-token-for-tests"  # >= MIN_TOKEN_LENGTH

ROOT = "arn:aws:organizations::111111111111:root/o-test/r-0001"


def ou(name: str) -> Resource:
    return Resource(f"arn:aws:organizations::111111111111:ou/o-test/ou-{name.lower()}", "aws", "aws:ou", name,
                    ROOT, {}, "org", name_signal=True, path=f"/Root/{name}")


def account(number: str, ou_name: str, name: str) -> Resource:
    return Resource(number, "aws", "aws:account", name, ou(ou_name).id, {}, "org")


def db(arn: str, account_id: str, tags: dict[str, str] | None = None) -> Resource:
    return Resource(arn, "aws", "rds:db", arn.rpartition(":")[2], account_id, tags or {"app": "orders"},
                    f"{account_id}/us-east-1", region="us-east-1")


def aws_resources() -> list[Resource]:
    root = Resource(ROOT, "aws", "aws:root", "Root", None, {}, "org", path="/Root")
    return [
        root, ou("Production"), ou("Staging"), ou("Sandbox"), ou("Shared"),
        account("222222222222", "Production", "orders"), db(PROD_DB, "222222222222"),
        account("333333333333", "Staging", "orders"), db(STAGING_DB, "333333333333"),
        account("444444444444", "Sandbox", "orders"), db(SANDBOX_DB, "444444444444"),
        account("555555555555", "Shared", "shared"),
        Resource(UNLABELED, "aws", "s3:bucket", "shared-assets", "555555555555", {}, "555555555555/global"),
    ]


def k8s_resources() -> list[Resource]:
    cluster = Resource("k8s://prod-eu", "kubernetes", "k8s:cluster", "prod-eu", None, {}, "prod-eu",
                       declared="production", aliases=(EKS_ALIAS,))
    namespace = Resource("k8s://prod-eu/namespaces/payments", "kubernetes", "namespaces", "payments",
                         cluster.id, {}, "prod-eu")
    return [cluster, namespace,
            Resource(PROD_POD, "kubernetes", "deployments", "api", namespace.id, {}, "prod-eu")]


def populate(store: Store, now: datetime | None = None) -> None:
    """Commit the estate: current scans of ``aws`` and ``k8s``, an old scan of ``legacy``, and a retired db."""
    now = now or utcnow()
    tax = Taxonomy()
    commit_scan(store, tax, ScanResult("aws", aws_resources(), scopes=frozenset({"org"})), now, now)
    commit_scan(store, tax, ScanResult("k8s", k8s_resources(), scopes=frozenset({"prod-eu"})), now, now)
    old = now - timedelta(days=2)
    legacy = [account("666666666666", "Shared", "legacy"), db(STALE_DB, "666666666666", {"Environment": "sandbox"})]
    commit_scan(store, tax, ScanResult("legacy", legacy, scopes=frozenset({"666666666666/us-east-1"})), old, old)
    retired = [account("777777777777", "Sandbox", "retired"), db(GONE_DB, "777777777777")]
    commit_scan(store, tax, ScanResult("retired", retired), now, now)
    commit_scan(store, tax, ScanResult("retired", retired[:1]), now, now)


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_config(db_path: str, **api: Any) -> Config:
    return config_from_dict({
        "store": f"sqlite:///{db_path}",
        "approvers": {"production": ["sre-oncall", "dba-lead"], "staging": ["team-lead"]},
        "api": api,
    })


TOKENS = [{"name": "agent", "role": "reader", "sha256": sha(READER_TOKEN)},
          {"name": "ops", "role": "admin", "sha256": sha(ADMIN_TOKEN)}]
