"""The check's ``recovery`` over a real SQLite store and the real HTTP server: resources with facts committed
through the pipeline (``commit_changes``), the check JSON's recovery and ``reversible``, a data-destroying modify
decided as a delete, and the policy's ``irreversible`` key refusing an irreversible delete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.config import Config, ConfigError, config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.pipeline import commit_changes
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store

PROD, STAGING = "222222222222", "333333333333"
PROD_DB = f"arn:aws:rds:us-east-1:{PROD}:db:orders-db"
STAGING_DB = f"arn:aws:rds:us-east-1:{STAGING}:db:orders-db"
STAGING_SNAPSHOTTED = f"arn:aws:rds:us-east-1:{STAGING}:db:orders-archive"
CLUSTER, NAMESPACE = "k8s://dev", "k8s://dev/namespaces/scratch"
PVC_DELETE = "k8s://dev/scratch/persistentvolumeclaims/data-delete"
PVC_RETAIN = "k8s://dev/scratch/persistentvolumeclaims/data-retain"
NO_BACKUPS = {"deletion_protection": False, "backup_retention_days": 0, "latest_snapshot": None,
              "read_replica_of": None, "cluster": None}
SNAPSHOT = {"id": "orders-archive-manual", "at": "2026-03-01T01:00:00Z", "kind": "manual"}
SKIP = {"DBInstanceIdentifier": "orders-db", "SkipFinalSnapshot": True}


def estate() -> tuple[list[Resource], list[Resource]]:
    aws = [Resource(PROD, "aws", "aws:account", "orders-prod", None, {"env": "production"}, "org"),
           Resource(STAGING, "aws", "aws:account", "orders-stg", None, {"env": "staging"}, "org"),
           Resource(PROD_DB, "aws", "rds:db", "orders-db", PROD, {}, f"{PROD}/us-east-1", facts=NO_BACKUPS),
           Resource(STAGING_DB, "aws", "rds:db", "orders-db", STAGING, {}, f"{STAGING}/us-east-1", facts=NO_BACKUPS),
           Resource(STAGING_SNAPSHOTTED, "aws", "rds:db", "orders-archive", STAGING, {}, f"{STAGING}/us-east-1",
                    facts={**NO_BACKUPS, "latest_snapshot": SNAPSHOT})]
    k8s = [Resource(CLUSTER, "kubernetes", "k8s:cluster", "dev", None, {"env": "sandbox"}, "dev"),
           Resource(NAMESPACE, "kubernetes", "k8s:namespaces", "scratch", CLUSTER, {}, "dev"),
           Resource(PVC_DELETE, "kubernetes", "k8s:persistentvolumeclaims", "data-delete", NAMESPACE, {}, "dev",
                    facts={"reclaim_policy": "Delete", "storage_class": "gp3", "volume": "pv-1"}),
           Resource(PVC_RETAIN, "kubernetes", "k8s:persistentvolumeclaims", "data-retain", NAMESPACE, {}, "dev",
                    facts={"reclaim_policy": "Retain", "storage_class": "gp3-retain", "volume": "pv-2"})]
    return aws, k8s


@contextmanager
def serving(tmp_path: Path, **config: Any) -> Iterator[httpx.Client]:
    settings: Config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", **config})
    store = open_store(settings.store)
    aws, k8s = estate()
    taxonomy = Taxonomy.from_config(settings)
    commit_changes(store, taxonomy, "aws", aws)
    commit_changes(store, taxonomy, "kubernetes", k8s)
    with BackgroundServer(settings, store) as server, httpx.Client(base_url=server.url) as api:
        yield api


def check(api: httpx.Client, target: str, action: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"target": target, "action": action}
    if parameters is not None:
        body["parameters"] = parameters
    answer = api.post("/v1/check", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_the_production_orders_db_without_backups_is_irreversible_with_its_reasons(tmp_path: Path) -> None:
    with serving(tmp_path) as api:
        body = check(api, PROD_DB, "rds:DeleteDBInstance", SKIP)
        label = api.get("/v1/label", params={"target": PROD_DB}).json()
    assert body["label"]["facts"] == NO_BACKUPS and label["facts"] == NO_BACKUPS
    recovery = body["recovery"]
    assert (recovery["reversible"], body["reversible"], recovery["loses"]) == (False, False, "all of its data")
    assert "deletion protection is off" in recovery["why"]
    assert any(r.startswith("irreversible: deletion protection is off") for r in body["reasons"]), body["reasons"]
    # no irreversible key in the default policy: decided as every production delete
    assert (body["decision"], body["rule"]) == ("deny", "policy.production.delete")


def test_with_a_snapshot_it_is_recoverable_and_how_names_it(tmp_path: Path) -> None:
    with serving(tmp_path) as api:
        body = check(api, STAGING_SNAPSHOTTED, "rds:DeleteDBInstance", SKIP)
    assert body["reversible"] is True and "orders-archive-manual" in body["recovery"]["how"]
    assert any(r.startswith("recoverable:") for r in body["reasons"])


def test_the_irreversible_key_refuses_an_irreversible_delete_and_not_a_recoverable_one(tmp_path: Path) -> None:
    policy = {"staging": {"read": "allow", "create": "allow", "modify": "allow", "delete": "allow",
                          "irreversible": "deny"}}
    with serving(tmp_path, policy=policy) as api:
        twin = check(api, STAGING_DB, "rds:DeleteDBInstance", SKIP)
        recoverable = check(api, STAGING_SNAPSHOTTED, "rds:DeleteDBInstance", SKIP)
        # parameters not given: whether a final snapshot is taken is unknown, and unknown is decided as irreversible
        blind = check(api, STAGING_DB, "rds:DeleteDBInstance")
        final = check(api, STAGING_DB, "rds:DeleteDBInstance", {"FinalDBSnapshotIdentifier": "orders-final"})
    assert (twin["decision"], twin["rule"], twin["reversible"]) == ("deny", "policy.staging.irreversible", False)
    assert "policy: an irreversible delete in staging is deny (this one is irreversible)" in twin["reasons"]
    assert (recoverable["decision"], recoverable["rule"]) == ("allow", "policy.staging.delete")
    assert (blind["decision"], blind["recovery"]["reversible"]) == ("deny", "unknown")
    assert (final["decision"], final["reversible"]) == ("allow", True)


def test_a_modify_that_destroys_nothing_stays_a_modify(tmp_path: Path) -> None:
    with serving(tmp_path) as api:
        resize = check(api, STAGING_SNAPSHOTTED, "rds:ModifyDBInstance", {"DBInstanceClass": "db.r6g.large"})
        # its automated backups are off already: a retention of 0 destroys nothing
        zero = check(api, STAGING_SNAPSHOTTED, "rds:ModifyDBInstance", {"BackupRetentionPeriod": 0})
        blind = check(api, STAGING_SNAPSHOTTED, "rds:ModifyDBInstance")
    assert (resize["action_class"], resize["decision"], resize["reversible"]) == ("modify", "allow", True)
    assert (zero["action_class"], zero["recovery"]["destroys_data"], zero["reversible"]) == ("modify", False, True)
    # without its parameters it is a modify whose recovery is not known
    assert (blind["action_class"], blind["decision"], blind["recovery"]["reversible"]) == ("modify", "allow",
                                                                                           "unknown")


def test_a_retention_of_zero_on_a_backed_up_database_is_a_delete(tmp_path: Path) -> None:
    settings = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
    store = open_store(settings.store)
    aws, _ = estate()
    backed_up = [r if r.id != STAGING_DB else Resource(r.id, r.provider, r.kind, r.name, r.parent, r.tags, r.scope,
                                                       facts={**NO_BACKUPS, "backup_retention_days": 7})
                 for r in aws]
    commit_changes(store, Taxonomy.from_config(settings), "aws", backed_up)
    with BackgroundServer(settings, store) as server, httpx.Client(base_url=server.url) as api:
        wipe = check(api, STAGING_DB, "rds:ModifyDBInstance", {"BackupRetentionPeriod": 0})
        plain = check(api, STAGING_DB, "rds:ModifyDBInstance", {"BackupRetentionPeriod": 14})
    assert (wipe["action_class"], wipe["decision"], wipe["rule"]) == ("delete", "require_approval",
                                                                      "policy.staging.delete")
    assert any(r.startswith("it destroys data, so it is decided as a delete: BackupRetentionPeriod=0")
               for r in wipe["reasons"]), wipe["reasons"]
    assert wipe["recovery"]["destroys_data"] is True and wipe["reversible"] is False
    assert (plain["action_class"], plain["decision"], plain["reversible"]) == ("modify", "allow", True)


def test_a_pvc_with_delete_reclaim_is_irreversible_and_with_retain_recoverable(tmp_path: Path) -> None:
    policy = {"sandbox": {"read": "allow", "create": "allow", "modify": "allow", "delete": "allow",
                          "irreversible": "require_approval"}}
    with serving(tmp_path, policy=policy, approvers={"sandbox": ["platform"]}) as api:
        doomed = check(api, PVC_DELETE, "delete", {"propagationPolicy": "Background"})
        kept = check(api, PVC_RETAIN, "delete")
    assert (doomed["decision"], doomed["rule"], doomed["reversible"]) == ("require_approval",
                                                                          "policy.sandbox.irreversible", False)
    assert doomed["recovery"]["loses"] == "the volume pv-1 and all of its data" and doomed["approvers"] == ["platform"]
    assert (kept["decision"], kept["rule"], kept["reversible"]) == ("allow", "policy.sandbox.delete", True)


def test_a_policy_key_that_is_not_one_says_which_are(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policy\.staging\.irreversable: .*'irreversible'"):
        config_from_dict({"policy": {"staging": {"read": "allow", "create": "allow", "modify": "allow",
                                                 "delete": "allow", "irreversable": "deny"}}})
