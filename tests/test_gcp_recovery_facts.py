"""GCP recovery facts: Cloud SQL instances and buckets from the Cloud Asset search's ``versionedResources`` (through
the real google-cloud-asset client, REST, against the fake), asked for those types only; unknown where Cloud Asset
sends no representation; projects' liens not read (no official client for them: docs/recovery.md)."""

from __future__ import annotations

from pathlib import Path

import yaml

from envlabel.config import GcpSource, config_from_dict
from envlabel.discovery.gcp import FACT_ASSET_TYPES, PERMISSIONS, GcpScanner, default_retry
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.service.demo.fakes.gcp_crm import CRM, ORG_ID, FakeCrm
from envlabel.store import open_store

ROOT = Path(__file__).resolve().parents[1]
PAYMENTS_DB = "//cloudsql.googleapis.com/projects/payments-prod/instances/payments-db"
EXPORTS = "//storage.googleapis.com/projects/_/buckets/payments-exports"
ARCHIVE = "//storage.googleapis.com/projects/_/buckets/shared-logs-archive"


def gcp_source(url: str, tmp_path: Path) -> GcpSource:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        {"name": "gcp", "type": "gcp", "organization": ORG_ID, "api_endpoint": url}]})
    source = config.sources[0]
    assert isinstance(source, GcpSource)
    return source


def scan(url: str, tmp_path: Path) -> ScanResult:
    result = GcpScanner(gcp_source(url, tmp_path), retry=default_retry(5.0, initial_s=0.001, maximum_s=0.01),
                        page_size=2, asset_page_size=2).scan()
    assert result.complete, result.errors
    return result


def by_id(result: ScanResult) -> dict[str, Resource]:
    return {r.id: r for r in result.resources}


def test_cloud_sql_and_bucket_facts_come_from_their_versioned_resource(gcp_url: str, tmp_path: Path) -> None:
    found = by_id(scan(gcp_url, tmp_path))
    assert found[PAYMENTS_DB].facts == {"deletion_protection": False, "backups_enabled": True}
    assert found[EXPORTS].facts == {"versioning": True, "soft_delete_days": 7}
    assert found[ARCHIVE].facts == {"versioning": False, "soft_delete_days": 7}  # never enabled: omitted by the API


def test_a_changed_instance_and_a_bucket_without_soft_delete(gcp_crm: FakeCrm, gcp_url: str, tmp_path: Path) -> None:
    gcp_crm.assets.sql_instance("payments-prod", "payments-db", deletion_protection=True, backups=False)
    gcp_crm.assets.bucket("payments-prod", "scratch-exports", soft_delete_days=0)
    found = by_id(scan(gcp_url, tmp_path))
    assert found[PAYMENTS_DB].facts == {"deletion_protection": True, "backups_enabled": False}
    assert found["//storage.googleapis.com/projects/_/buckets/scratch-exports"].facts == {
        "versioning": False, "soft_delete_days": 0}


def test_without_a_versioned_resource_the_facts_stay_unknown(gcp_crm: FakeCrm, gcp_url: str, tmp_path: Path) -> None:
    gcp_crm.assets.add("sqladmin.googleapis.com/Instance", "payments-prod", "projects/payments-prod/instances/bare",
                       location="europe-west1", state="RUNNABLE")  # Cloud Asset indexed no representation
    found = by_id(scan(gcp_url, tmp_path))
    assert found["//cloudsql.googleapis.com/projects/payments-prod/instances/bare"].facts == {}
    assert found[f"{CRM}projects/payments-prod"].facts == {}  # liens: not read, so not known


def test_only_the_fact_types_ask_for_the_large_field(gcp_crm: FakeCrm, gcp_url: str, tmp_path: Path) -> None:
    scan(gcp_url, tmp_path)
    masks = {r.params.get("assetTypes", ""): r.params.get("readMask", "") for r in gcp_crm.requests
             if r.path.endswith(":searchAllResources")}
    asking = {asset_type for asset_type, mask in masks.items() if "versionedResources" in mask}
    assert asking == set(FACT_ASSET_TYPES)
    assert "versionedResources" not in masks["compute.googleapis.com/Instance"]


def test_the_role_gains_nothing_and_still_covers_every_call(gcp_crm: FakeCrm, gcp_url: str, tmp_path: Path) -> None:
    role = yaml.safe_load((ROOT / "discovery" / "gcp-role.yaml").read_text())
    assert tuple(sorted(role["includedPermissions"])) == PERMISSIONS
    gcp_crm.grant_only(role["includedPermissions"])  # versionedResources needs searchAllResources, nothing more
    assert by_id(scan(gcp_url, tmp_path))[EXPORTS].facts["versioning"] is True


def test_facts_are_stored_and_shown_in_the_label(gcp_url: str, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    commit_scan(store, Taxonomy(), scan(gcp_url, tmp_path), utcnow())
    stored = store.get(PAYMENTS_DB)
    assert stored is not None and stored.resource.facts == {"deletion_protection": False, "backups_enabled": True}
    label = Query(config_from_dict({}), store).label(EXPORTS)
    assert label["facts"] == {"versioning": True, "soft_delete_days": 7}
