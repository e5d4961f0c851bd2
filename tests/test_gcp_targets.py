"""GCP names as targets: full names, the relative forms gcloud prints, gs:// buckets, a name's project."""

from __future__ import annotations

import pytest

from envlabel.errors import TargetError
from envlabel.targets import GCP_COLLECTIONS, gcp_asset_type, gcp_project_of, parse_target

VM = "//compute.googleapis.com/projects/ml-playground/zones/us-central1-a/instances/vm1"


@pytest.mark.parametrize(("raw", "canonical"), [
    (VM, VM),
    ("projects/ml-playground/zones/us-central1-a/instances/vm1", VM),
    ("projects/p/zones/z/disks/d", "//compute.googleapis.com/projects/p/zones/z/disks/d"),
    ("projects/p/global/networks/default", "//compute.googleapis.com/projects/p/global/networks/default"),
    ("projects/p/zones/z/clusters/c", "//container.googleapis.com/projects/p/zones/z/clusters/c"),
    ("projects/p/topics/t", "//pubsub.googleapis.com/projects/p/topics/t"),
    ("projects/p/datasets/d/tables/t", "//bigquery.googleapis.com/projects/p/datasets/d/tables/t"),
    ("projects/p/secrets/s", "//secretmanager.googleapis.com/projects/p/secrets/s"),
    ("gs://payments-exports", "//storage.googleapis.com/projects/_/buckets/payments-exports"),
    ("gs://payments-exports/2024/01/dump.csv", "//storage.googleapis.com/projects/_/buckets/payments-exports"),
    ("//storage.googleapis.com/payments-exports", "//storage.googleapis.com/projects/_/buckets/payments-exports"),
    ("//storage.googleapis.com/projects/p/buckets/b-1", "//storage.googleapis.com/projects/_/buckets/b-1"),
    ("//sqladmin.googleapis.com/projects/p/instances/db", "//cloudsql.googleapis.com/projects/p/instances/db"),
    ("projects/p", "//cloudresourcemanager.googleapis.com/projects/p"),
])
def test_gcp_names_are_read_as_their_cloud_asset_name(raw: str, canonical: str) -> None:
    target = parse_target(raw)
    assert (target.id, target.provider) == (canonical, "gcp")


@pytest.mark.parametrize(("raw", "says"), [
    ("projects/p/instances/db", "several GCP services"),  # Cloud SQL, Spanner, Bigtable
    ("projects/p/locations/europe-west1/clusters/c", "several GCP services"),  # GKE, AlloyDB
    ("projects/p/frobs/x", "not a shape envlabel maps"),
    ("projects/p/zones/z/instances", "alternates COLLECTION/ID"),
    ("//compute.googleapis.com/projects//zones/z", "malformed"),
    ("//compute.googleapis.com/projects/../secrets/x", "malformed"),
    ("//compute.googleapis.com/projects/p/zones/z/instances/a b", "malformed"),
    ("//www.googleapis.com/compute/v1/projects/p", "names no service"),
    ("gs://A_BAD", "malformed Cloud Storage bucket"),
    ("gs://", "malformed Cloud Storage bucket"),
])
def test_a_gcp_name_envlabel_cannot_place_is_refused_saying_what_to_pass(raw: str, says: str) -> None:
    with pytest.raises(TargetError) as error:
        parse_target(raw)
    assert says in str(error.value)
    assert "//" in str(error.value)  # every refusal shows the full-name form to pass instead


def test_an_ambiguous_relative_name_asks_for_the_full_name() -> None:
    with pytest.raises(TargetError, match=r"pass the full resource name //SERVICE\.googleapis\.com/projects/p/"):
        parse_target("projects/p/instances/db")
    assert GCP_COLLECTIONS[("instances",)] is None


def test_a_name_below_a_project_has_that_project_as_container_and_an_asset_type() -> None:
    assert gcp_project_of(VM) == "//cloudresourcemanager.googleapis.com/projects/ml-playground"
    assert gcp_asset_type(VM) == "compute.googleapis.com/Instance"
    sql = parse_target("//sqladmin.googleapis.com/projects/p/instances/db").id
    assert gcp_asset_type(sql) == "sqladmin.googleapis.com/Instance"  # Cloud Asset's type, not the host
    bucket = parse_target("gs://b-1").id
    assert gcp_project_of(bucket) is None  # a bucket's name does not say its project
    assert gcp_asset_type(bucket) == "storage.googleapis.com/Bucket"
    assert gcp_project_of("//cloudresourcemanager.googleapis.com/projects/p") is None
    assert gcp_asset_type("//compute.googleapis.com/projects/p/global/networks/n") == "compute.googleapis.com/Network"
