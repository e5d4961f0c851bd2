"""GCP IAM permissions in the one action vocabulary, from the reviewed table envlabel/data/gcp-permissions.json;
and the check over the real HTTP server on resources below GCP projects (scanned through the fake Cloud Asset API,
looked up, or decided by their project when no label can have been missed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.actions import GCP_DATA_FILE, classify
from envlabel.config import Config, config_from_dict
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.demo.fakes.gcp_crm import FakeCrm, seed_example, start_fake_gcp
from envlabel.store import open_store

CLASSES = {"read", "create", "modify", "delete"}


@pytest.mark.parametrize(("permission", "cls"), [
    ("compute.instances.delete", "delete"), ("cloudsql.instances.delete", "delete"),
    ("resourcemanager.projects.delete", "delete"), ("storage.buckets.get", "read"), ("storage.objects.get", "read"),
    ("storage.objects.list", "read"), ("compute.instances.create", "create"), ("compute.instances.stop", "modify"),
    ("compute.instances.setIamPolicy", "modify"), ("resourcemanager.projects.getIamPolicy", "read"),
    ("iam.serviceAccounts.actAs", "modify"), ("iam.serviceAccounts.signBlob", "modify"),
    ("iam.serviceAccounts.signJwt", "modify"), ("iam.serviceAccounts.getAccessToken", "modify"),
    ("iam.serviceAccounts.implicitDelegation", "modify"), ("secretmanager.versions.access", "modify"),
    ("compute.instances.deleteAccessConfig", "delete"), ("compute.instances.batchDelete", "delete"),
    ("storage.objects.delete", "delete"), ("pubsub.topics.publish", "modify"),
    ("cloudsql.instances.restoreBackup", "delete"), ("cloudkms.cryptoKeyVersions.destroy", "delete"),
    ("compute.instances.getSerialPortOutput", "read"), ("container.pods.exec", "modify"),
])
def test_a_permission_is_classed_from_its_verb_and_the_reviewed_exceptions(permission: str, cls: str) -> None:
    found = classify(permission)
    assert (found.action_class, found.recognized, found.understood_as) == (cls, True, permission), found.reason
    assert permission in found.reason and "GCP permission" in found.reason


@pytest.mark.parametrize("action", [
    "compute.instances.frobnicate",  # a verb no rule covers
    "madeup.things.get",  # a service GCP does not have
    "Compute.instances.get", "compute.instances.", "compute..get", "compute.instances.get.more",
    "compute.instances.getaway",  # get, but not camelCase get...: not a read
])
def test_an_unknown_permission_shape_fails_closed_as_delete(action: str) -> None:
    found = classify(action)
    assert (found.action_class, found.recognized, found.understood_as) == ("delete", False, None)
    assert "GCP permission" in found.reason and "fail closed" in found.reason


def test_the_declared_table_is_well_formed() -> None:
    data = json.loads(files("envlabel").joinpath(GCP_DATA_FILE).read_text())
    assert data["format"] == 1
    assert set(data["verbs"].values()) <= CLASSES and set(data["prefixes"].values()) <= CLASSES
    assert all(row[0] in CLASSES and row[1] for row in data["permissions"].values())
    assert all(p.split(".")[0] in data["services"] for p in data["permissions"])
    assert set(data["why"]) <= set(data["verbs"])  # every reason explains a verb the table has
    for verb in ("actAs", "signBlob", "signJwt", "getAccessToken", "implicitDelegation"):
        assert data["verbs"][verb] != "read", verb  # mints or uses credentials


# -- the check, over real sockets -----------------------------------------------------------------
VM = "//compute.googleapis.com/projects/ml-playground/zones/us-central1-a/instances/{}"


@dataclass
class Estate:
    crm: FakeCrm
    url: str
    config: Config


def gcp_config(tmp_path: Path, endpoint: str, **extra: Any) -> Config:
    return config_from_dict({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}", **extra,
        "sources": [{"name": "gcp", "type": "gcp", "organization": "123456789012", "api_endpoint": endpoint}]})


def serve(tmp_path: Path, **extra: Any) -> Iterator[Estate]:
    crm = seed_example()
    fake_url, fake = start_fake_gcp(crm)
    try:
        config = gcp_config(tmp_path, fake_url, **extra)
        store = open_store(config.store)
        summary = run_source(config, store, config.sources[0])
        assert summary.complete, summary.errors
        with BackgroundServer(config, store) as server:
            yield Estate(crm, server.url, config)
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    yield from serve(tmp_path_factory.mktemp("gcp-check"))


@pytest.fixture(scope="module")
def no_lookups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    yield from serve(tmp_path_factory.mktemp("gcp-no-lookup"), lookup_timeout="0s")


def check(url: str, target: str, action: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/check", json={"target": target, "action": action})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_scanned_vm_in_a_sandbox_project_may_be_deleted_by_its_permission_name(estate: Estate) -> None:
    body = check(estate.url, VM.format("vm1"), "compute.instances.delete")
    assert (body["environment"], body["action_class"], body["understood_as"]) == (
        "sandbox", "delete", "compute.instances.delete"), body["reasons"]
    relative = check(estate.url, "projects/ml-playground/zones/us-central1-a/instances/vm1", "compute.instances.delete")
    assert relative["environment"] == "sandbox" and relative["label"]["found"]


def test_a_production_labeled_vm_in_a_sandbox_project_is_not_deleted(estate: Estate) -> None:
    body = check(estate.url, VM.format("trainer"), "compute.instances.delete")
    assert body["environment"] == "production" and body["decision"] != "allow", body["reasons"]


def test_a_vm_created_after_the_scan_with_a_production_label_is_looked_up_and_refused(estate: Estate) -> None:
    estate.crm.assets.instance("ml-playground", "us-central1-a", "late-prod", {"env": "prod"})
    body = check(estate.url, VM.format("late-prod"), "compute.instances.delete")
    assert body["environment"] == "production" and body["decision"] != "allow", body["reasons"]
    assert any("looked up through source gcp" in r for r in body["reasons"]), body["reasons"]


def test_a_gcp_resource_that_does_not_exist_is_production(estate: Estate) -> None:
    body = check(estate.url, VM.format("no-such-vm"), "compute.instances.delete")
    assert body["environment"] == "production" and body["decision"] != "allow", body["reasons"]


def test_a_read_permission_on_a_production_bucket_is_a_read(estate: Estate) -> None:
    body = check(estate.url, "gs://payments-exports", "storage.buckets.get")
    assert (body["action_class"], body["environment"], body["decision"]) == ("read", "production", "allow")
    delete = check(estate.url, "gs://payments-exports/dump.csv", "storage.objects.delete")
    assert delete["decision"] != "allow" and delete["action_class"] == "delete"


def test_without_lookups_a_searched_type_is_decided_by_its_fresh_project(no_lookups: Estate) -> None:
    body = check(no_lookups.url, VM.format("never-seen"), "compute.instances.stop")
    assert body["environment"] == "sandbox", body["reasons"]
    assert any("decided by its project projects/ml-playground" in r for r in body["reasons"]), body["reasons"]


def test_without_lookups_a_type_the_scan_does_not_search_fails_closed(no_lookups: Estate) -> None:
    filestore = "//file.googleapis.com/projects/ml-playground/locations/us-central1-a/instances/nfs"
    body = check(no_lookups.url, filestore, "file.instances.delete")
    assert body["environment"] == "production" and body["decision"] != "allow", body["reasons"]
    assert any("does not search file.googleapis.com/Instance" in r for r in body["reasons"]), body["reasons"]


def test_without_lookups_a_resource_of_an_unlabeled_project_fails_closed(no_lookups: Estate) -> None:
    target = "//compute.googleapis.com/projects/shared-logging/zones/us-central1-a/instances/x"
    body = check(no_lookups.url, target, "compute.instances.delete")
    assert body["environment"] == "production" and body["decision"] != "allow", body["reasons"]
