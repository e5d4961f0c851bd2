"""gcloud commands on resources below the project: the reader names each resource by its full name with the IAM
permission the call needs (``envlabel.commands.plan_command``), and the check decides it from the resource's own
label, against a store built by a real scan of the fake Resource Manager and Cloud Asset Inventory (the example
estate: ``ml-playground`` is a sandbox project holding ``vm1``, unlabeled, and ``trainer``, labeled env=prod), in
process and through ``envlabel check-command`` as an agent's hook runs it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envlabel.actions import classify
from envlabel.commands import CommandContext, Operation, Unparsed, plan_command
from envlabel.commands.gcloud import verb_class
from envlabel.config import Config, GcpSource, config_from_dict
from envlabel.discovery.gcp import lookup_gcp_asset
from envlabel.service.core.commands import check_command
from envlabel.service.core.pipeline import run_source
from envlabel.service.core.query import Query
from envlabel.service.demo.fakes.gcp_crm import ORG_ID, FakeCrm
from envlabel.store import open_store
from envlabel.store.sql import Store

ENVLABEL = str(Path(sys.executable).parent / "envlabel")
ZONE = "us-central1-a"
VM1 = f"//compute.googleapis.com/projects/ml-playground/zones/{ZONE}/instances/vm1"
TRAINER = f"//compute.googleapis.com/projects/ml-playground/zones/{ZONE}/instances/trainer"
BUCKET = "//storage.googleapis.com/projects/_/buckets/"
DELETE_VM1 = f"gcloud compute instances delete vm1 --zone {ZONE} --project ml-playground --quiet"
DELETE_TRAINER = f"gcloud compute instances delete trainer --zone {ZONE} --project ml-playground --quiet"


@pytest.fixture
def context(tmp_path: Path) -> CommandContext:
    """A machine whose gcloud configuration sets no project (each command names its own, or sbx-proj)."""
    return CommandContext({"HOME": str(tmp_path), "CLOUDSDK_CORE_PROJECT": "sbx-proj"}, str(tmp_path))


def operations(line: str, context: CommandContext) -> list[tuple[str, str, bool]]:
    plan = plan_command(line, context)
    assert plan.unparsed == [], plan.unparsed
    return [(op.target, op.action, op.contents) for op in plan.operations]


RESOURCE_COMMANDS = [
    (DELETE_VM1, [(VM1, "compute.instances.delete", True)]),
    ("gcloud compute instances delete vm1 vm2 --zone=zones/us-central1-a",
     [(f"//compute.googleapis.com/projects/sbx-proj/zones/{ZONE}/instances/{vm}", "compute.instances.delete", True)
      for vm in ("vm1", "vm2")]),
    ("gcloud compute instances add-labels vm1 --zone us-central1-a --labels env=dev",
     [(f"//compute.googleapis.com/projects/sbx-proj/zones/{ZONE}/instances/vm1", "compute.instances.setLabels",
       False)]),
    ("gcloud compute instances stop vm1 --zone us-central1-a",
     [(f"//compute.googleapis.com/projects/sbx-proj/zones/{ZONE}/instances/vm1", "compute.instances.stop", False)]),
    ("gcloud compute disks delete d1 --region us-central1",
     [("//compute.googleapis.com/projects/sbx-proj/regions/us-central1/disks/d1", "compute.disks.delete", True)]),
    # a create is checked on the project it creates in
    ("gcloud compute instances create vm9 --zone us-central1-a --machine-type e2-small --project ml-playground",
     [("projects/ml-playground", "compute.instances.create", False)]),
    ("gcloud storage buckets delete gs://payments-exports", [(BUCKET + "payments-exports", "storage.buckets.delete",
                                                              False)]),
    ("gcloud storage rm -r gs://payments-exports",
     [(BUCKET + "payments-exports", "storage.objects.delete", False),
      (BUCKET + "payments-exports", "storage.buckets.delete", False)]),
    ("gcloud storage rm gs://payments-exports/2024/report.csv",
     [(BUCKET + "payments-exports", "storage.objects.delete", False)]),
    ("gcloud storage buckets update gs://payments-exports --update-labels env=dev",
     [(BUCKET + "payments-exports", "storage.buckets.update", False)]),
    # a copy may overwrite: every bucket it names (which one is the destination is not trusted)
    ("gcloud storage cp gs://shared-logs-archive/a.log gs://payments-exports/a.log",
     [(BUCKET + "shared-logs-archive", "storage.objects.delete", False),
      (BUCKET + "payments-exports", "storage.objects.delete", False)]),
    ("gcloud storage cp --no-clobber report.csv gs://payments-exports/",
     [(BUCKET + "payments-exports", "storage.objects.create", False)]),
    ("gcloud storage buckets create gs://new-bucket --project ml-playground",
     [("projects/ml-playground", "storage.buckets.create", False)]),
    ("gcloud storage ls gs://payments-exports", []),
    ("gcloud sql instances delete payments-db --project payments-prod",
     [("//cloudsql.googleapis.com/projects/payments-prod/instances/payments-db", "cloudsql.instances.delete", True)]),
    ("gcloud sql instances restore-backup payments-db --backup-id 7 --project payments-prod",
     [("//cloudsql.googleapis.com/projects/payments-prod/instances/payments-db", "cloudsql.instances.restoreBackup",
       False)]),
    ("gcloud container clusters delete payments-gke --region europe-west1 --project payments-prod",
     [("//container.googleapis.com/projects/payments-prod/locations/europe-west1/clusters/payments-gke",
       "container.clusters.delete", True)]),
    ("gcloud container clusters delete c1 --zone europe-west1-b",
     [("//container.googleapis.com/projects/sbx-proj/locations/europe-west1-b/clusters/c1",
       "container.clusters.delete", True)]),
    ("gcloud pubsub topics delete orders-events --project orders-prod",
     [("//pubsub.googleapis.com/projects/orders-prod/topics/orders-events", "pubsub.topics.delete", True)]),
    ("gcloud pubsub subscriptions pull s1 --project orders-prod",
     [("//pubsub.googleapis.com/projects/orders-prod/subscriptions/s1", "pubsub.subscriptions.consume", False)]),
    ("gcloud run services delete web --region us-central1 --project web-staging",
     [("//run.googleapis.com/projects/web-staging/locations/us-central1/services/web", "run.services.delete", True)]),
    ("gcloud secrets delete hf-token --project ml-playground",
     [("//secretmanager.googleapis.com/projects/ml-playground/secrets/hf-token", "secretmanager.secrets.delete",
       True)]),
    ("gcloud spanner instances delete orders-spanner --project orders-prod",
     [("//spanner.googleapis.com/projects/orders-prod/instances/orders-spanner", "spanner.instances.delete", True)]),
    ("gcloud projects delete ml-playground", [("projects/ml-playground", "resourcemanager.projects.delete", True)]),
    # a relative name gcloud prints says its project
    (f"gcloud compute instances delete projects/ml-playground/zones/{ZONE}/instances/trainer",
     [(TRAINER, "compute.instances.delete", True)]),
    # not enough to name one resource: the strictest label in the project decides
    ("gcloud compute instances delete vm1 --project ml-playground",
     [("projects/ml-playground", "compute.instances.delete", True)]),
    ("gcloud container clusters delete payments-gke --project payments-prod",
     [("projects/payments-prod", "container.clusters.delete", True)]),
    ("gcloud run services delete web --project web-staging", [("projects/web-staging", "run.services.delete", True)]),
]


@pytest.mark.parametrize(("line", "expected"), RESOURCE_COMMANDS)
def test_a_resource_command_is_read_as_its_permission_on_the_resource(context: CommandContext, line: str,
                                                                      expected: list[tuple[str, str, bool]]) -> None:
    assert operations(line, context) == expected


def test_every_permission_the_reader_sends_is_recognized_as_strict_as_its_verb() -> None:
    """A permission the vocabulary classed lower than the gcloud verb would relax the check: none does (a copy
    that may not overwrite, --no-clobber, is the one create)."""
    rank = {"read": 0, "create": 1, "modify": 2, "delete": 3}
    for line, found in RESOURCE_COMMANDS:
        verb = next(w for w in shlex.split(line)[1:] if verb_class(w) is not None)
        least = "create" if "--no-clobber" in line else str(verb_class(verb))
        for _target, action, _contents in found:
            cls = classify(action)
            assert cls.recognized and rank[cls.action_class] >= rank[least], (line, action, cls.action_class)


@pytest.mark.parametrize(("argv", "reason"), [
    (["gcloud", "storage", "rm", "gs://payments-*/x"], "pattern"),
    (["gcloud", "storage", "rm", "-I"], "names no gs:// URL"),
    (["gcloud", "compute", "instances", "delete", "vm1", "--zone", "\x00$ZONE\x00"], "computed"),
])
def test_what_names_no_resource_is_not_understood(context: CommandContext, argv: list[str], reason: str) -> None:
    plan = plan_command(argv, context)
    [item] = plan.unparsed
    assert isinstance(item, Unparsed) and reason in item.reason and plan.operations == []


# -- against a store built by a real scan of the fake -------------------------------------------------------
def gcp_config(url: str, tmp_path: Path) -> dict[str, Any]:
    return {"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
            "sources": [{"name": "gcp", "type": "gcp", "organization": ORG_ID, "api_endpoint": url}]}


@pytest.fixture
def scanned(gcp_url: str, tmp_path: Path) -> Iterator[tuple[Config, Store]]:
    """The example estate scanned by the registered GCP scanner into a real SQLite file."""
    config = config_from_dict(gcp_config(gcp_url, tmp_path))
    store = open_store(config.store)
    try:
        assert run_source(config, store, config.sources[0]).complete
        yield config, store
    finally:
        store.close()


def decided(scanned: tuple[Config, Store], line: str, context: CommandContext) -> dict[str, Any]:
    config, store = scanned
    return check_command(Query(config, store), line, context)


@pytest.mark.parametrize(("line", "decision", "environment"), [
    (DELETE_VM1, "allow", "sandbox"),  # the issue: denied as "never seen"
    (DELETE_TRAINER, "deny", "production"),  # env=prod on the VM itself, in a sandbox project
    # no zone: it could be trainer, so the strictest label in the project decides
    ("gcloud compute instances delete vm1 --project ml-playground", "deny", "production"),
    ("gcloud storage rm -r gs://payments-exports", "deny", "production"),
    ("gcloud sql instances delete payments-db --project payments-prod", "deny", "production"),
    ("gcloud container clusters delete payments-gke --region europe-west1 --project payments-prod", "deny",
     "production"),
    # no signal at all: unknown, decided as production (fail closed)
    ("gcloud storage rm gs://shared-logs-archive/old.log", "deny", "production"),
])
def test_gcloud_resource_commands_are_decided_by_the_resources_own_labels(
        scanned: tuple[Config, Store], context: CommandContext, line: str, decision: str, environment: str) -> None:
    answer = decided(scanned, line, context)
    assert answer["unparsed"] == []
    assert answer["decision"] == decision, answer
    assert {op["environment"] for op in answer["operations"]} == {environment}, answer


def test_a_vm_no_scan_has_seen_is_not_allowed(scanned: tuple[Config, Store], context: CommandContext) -> None:
    """A name the fake does not hold: the lookup finds nothing, so it is decided as production."""
    answer = decided(scanned, f"gcloud compute instances delete ghost --zone {ZONE} --project ml-playground",
                     context)
    assert answer["decision"] == "deny", answer


def cli(config_file: Path, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``envlabel check-command`` as a hook or a person runs it, against the configured store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVLABEL_", "CLOUDSDK_"))}
    env.update(HOME=str(home), ENVLABEL_CONFIG=str(config_file))
    return subprocess.run([ENVLABEL, *argv], capture_output=True, text=True, env=env, cwd=home, timeout=120,
                          check=False)


def test_check_command_allows_the_sandbox_vm_and_denies_the_production_one(
        scanned: tuple[Config, Store], gcp_url: str, gcp_crm: FakeCrm, tmp_path: Path) -> None:
    config_file = tmp_path / "envlabel.yaml"
    config_file.write_text(json.dumps(gcp_config(gcp_url, tmp_path)))  # YAML reads JSON
    allowed = cli(config_file, tmp_path, "check-command", "--json", "--", *shlex.split(DELETE_VM1))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    [vm] = json.loads(allowed.stdout)["operations"]
    assert (vm["target"], vm["action"], vm["environment"], vm["decision"]) == (
        VM1, "compute.instances.delete", "sandbox", "allow")
    denied = cli(config_file, tmp_path, "check-command", "--shell", f"{DELETE_VM1} && {DELETE_TRAINER}")
    assert denied.returncode == 5, denied.stdout + denied.stderr
    assert f"deny: compute.instances.delete (delete) on {TRAINER} as production" in denied.stdout, denied.stdout
    assert denied.stdout.rstrip().endswith("decision: deny (2 operation(s))")
    # the check refused it; the production VM is still there, as Cloud Asset Inventory answers over HTTP
    source = scanned[0].sources[0]
    assert isinstance(source, GcpSource)
    still = lookup_gcp_asset(source, TRAINER, 10.0)
    assert still is not None and still.tags.get("env") == "prod"


def test_an_operation_names_its_resource_for_the_hook(context: CommandContext) -> None:
    [op] = plan_command(DELETE_TRAINER, context).operations
    assert isinstance(op, Operation)
    assert op.note == f"gcloud compute instances delete: delete on {TRAINER}"
    assert op.command == DELETE_TRAINER
