"""Audit of GCP resources below projects: findings on the resource whose label must change, with gcloud commands
that set that label."""

from __future__ import annotations

import shlex

from envlabel.labelers.findings import Auditor
from envlabel.labelers.remediation import tag_command
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource

CRM = "//cloudresourcemanager.googleapis.com/"
PROJECT = Resource(CRM + "projects/ml-playground", "gcp", "gcp:project", "ml-playground", CRM + "folders/1",
                   {"environment": "Development"})
FOLDER = Resource(CRM + "folders/1", "gcp", "gcp:folder", "Sandbox", None, {}, name_signal=True)
VM = "//compute.googleapis.com/projects/ml-playground/zones/us-central1-a/instances/trainer"


def below(name: str, tags: dict[str, str], kind: str = "compute.Instance") -> Resource:
    return Resource(name, "gcp", kind, name.rsplit("/", 1)[-1], PROJECT.id, tags)


def test_a_prod_labeled_vm_in_a_sandbox_project_is_a_conflict_fixed_by_a_gcloud_add_labels() -> None:
    auditor = Auditor(Taxonomy(), {PROJECT.id: PROJECT, FOLDER.id: FOLDER}, {})
    for resource in (FOLDER, PROJECT, below(VM, {"env": "prod"})):
        auditor.add(resource)
    found = [f for f in auditor.findings() if f.target == VM]
    assert [f.kind for f in found] == ["conflict"], found
    command = tag_command(found[0].resource, found[0].tags)  # type: ignore[arg-type]
    assert command == ("gcloud compute instances add-labels trainer --zone us-central1-a --project ml-playground "
                       "--labels env=sandbox")


def test_unlabeled_and_non_canonical_gcp_resources_get_working_commands() -> None:
    unknown_project = Resource(CRM + "projects/shared-logging", "gcp", "gcp:project", "shared-logging", None, {})
    bucket = Resource("//storage.googleapis.com/projects/_/buckets/shared-logs-archive", "gcp", "storage.Bucket",
                      "shared-logs-archive", unknown_project.id, {})
    auditor = Auditor(Taxonomy(), {PROJECT.id: PROJECT, FOLDER.id: FOLDER, unknown_project.id: unknown_project}, {})
    db = below("//cloudsql.googleapis.com/projects/ml-playground/instances/db", {"env": "sbx"}, "sqladmin.Instance")
    for resource in (FOLDER, PROJECT, unknown_project, bucket, db):
        auditor.add(resource)
    by_target = {f.target: f for f in auditor.findings()}
    assert by_target[db.id].kind == "non-canonical"
    assert tag_command(db, by_target[db.id].tags) == \
        "gcloud sql instances patch db --project ml-playground --update-labels env=sandbox"
    assert by_target[unknown_project.id].kind == "unlabeled"  # the fix is on the project, which the bucket inherits
    assert tag_command(bucket, (("env", "production"),)) == \
        "gcloud storage buckets update gs://shared-logs-archive --update-labels env=production"


def test_every_default_asset_type_has_a_label_command_and_values_are_quoted() -> None:
    names = {
        "//compute.googleapis.com/projects/p/zones/z/disks/d": "gcloud compute disks add-labels d --zone z",
        "//container.googleapis.com/projects/p/locations/europe-west1/clusters/c":
            "gcloud container clusters update c --location europe-west1",
        "//bigquery.googleapis.com/projects/p/datasets/d": "bq update --set_label env:production p:d",
        "//pubsub.googleapis.com/projects/p/topics/t": "gcloud pubsub topics update t --project p",
        "//run.googleapis.com/projects/p/locations/us-central1/services/web": "gcloud run services update web",
        "//spanner.googleapis.com/projects/p/instances/i": "gcloud spanner instances update i --project p",
        "//secretmanager.googleapis.com/projects/p/secrets/s": "gcloud secrets update s --project p",
    }
    for name, starts in names.items():
        command = tag_command(below(name, {}), (("env", "production"),))
        assert command is not None and command.startswith(starts), (name, command)
    hostile = tag_command(below("//pubsub.googleapis.com/projects/p/topics/t;rm", {}), (("env", "x y"),))
    assert hostile is not None and shlex.split(hostile)[4] == "t;rm"  # quoted, one word
