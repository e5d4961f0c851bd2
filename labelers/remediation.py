"""The command that applies a finding's fix, per provider, built from the target id and kind.

Each command only sets the environment tag/label the finding names (or, for an
``unrecoverable`` finding, turns on what makes a delete recoverable); a person
runs it (or pastes it into a ticket). Values are shell-quoted.

>>> from envlabel.model import Resource
>>> db = Resource("arn:aws:rds:eu-west-1:222222222222:db:orders", "aws", "rds:db", "orders")
>>> tag_command(db, (("Environment", "production"),)).split(" --")[1:]
['region eu-west-1', 'resource-arn-list arn:aws:rds:eu-west-1:222222222222:db:orders', 'tags Environment=production']
>>> ns = Resource("k8s://prod-eu/namespaces/payments", "kubernetes", "k8s:namespaces", "payments")
>>> tag_command(ns, (("environment", "production"),))
'kubectl --context prod-eu label namespace payments environment=production --overwrite'
>>> recovery_command(db)
'aws rds modify-db-instance --region eu-west-1 --db-instance-identifier orders --deletion-protection \
--backup-retention-period 7 --apply-immediately'
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Callable, Sequence
from functools import lru_cache

from envlabel.labelers.findings import Observed
from envlabel.targets import GCP_CRM

Tags = Sequence[tuple[str, str]]

_ORG_ID = re.compile(r"^(\d{12}|ou-[a-z0-9]+-[a-z0-9]+|r-[a-z0-9]+)$")
_GCP_ORG = re.compile(r"organizations/(\d+)")
#: the separator after an ARN's resource type: ``db:orders``, ``table/orders``
_ARN_TYPE = re.compile(r"[:/]")


def tag_command(resource: Observed, tags: Tags) -> str | None:
    """A shell command that sets ``tags`` on ``resource``, or None when the fix is not a tag (config)."""
    if not tags:
        return None
    if resource.provider == "aws":
        return _aws(resource, tags)
    if resource.provider == "gcp":
        return _gcp(resource, tags)
    if resource.provider == "kubernetes":
        return _kubernetes(resource, tags)
    return None


def _aws(resource: Observed, tags: Tags) -> str:
    rid = resource.id
    if rid.startswith("arn:") and not rid.startswith("arn:aws:organizations:"):  # the common case: any other ARN
        return _arn_command(rid, resource.region, tuple(tags))
    org_id = rid.rsplit("/", 1)[-1] if rid.startswith("arn:aws:organizations:") else rid
    if not org_id.startswith("arn:") and _ORG_ID.match(org_id):  # accounts, OUs, the root: via Organizations
        pairs = " ".join(f"Key={shlex.quote(k)},Value={shlex.quote(v)}" for k, v in tags)
        return f"aws organizations tag-resource --resource-id {org_id} --tags {pairs}"
    return _arn_command(rid, resource.region, tuple(tags))


def _arn_command(rid: str, region: str, tags: tuple[tuple[str, str], ...]) -> str:
    """The tagging API's command for ``rid``: half a million in a messy estate, so what surrounds the ARN is built
    once per (region, tags), and an ARN that needs no quotes is not quoted."""
    parts = rid.split(":", 4)
    if len(parts) == 5:
        region = parts[3]
    around = _ARN_COMMANDS.get((region, tags))
    if around is None:
        around = (f"aws resourcegroupstaggingapi tag-resources {_region_option(region)}--resource-arn-list ",
                  f" --tags {_tags_option(tags)}")
        if len(_ARN_COMMANDS) < 4096:
            _ARN_COMMANDS[(region, tags)] = around
    safe = rid.isascii() and rid and not rid.encode("ascii").translate(None, _SAFE)
    return f"{around[0]}{rid if safe else shlex.quote(rid)}{around[1]}"


#: (region, tags) -> the tagging API command before and after the ARN (see _arn_command)
_ARN_COMMANDS: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, str]] = {}
#: the characters shlex.quote leaves unquoted (its test is a private regex; deleting these from the bytes of an
#: ARN, and finding nothing left, is a third of its time)
_SAFE = (string.ascii_letters + string.digits + "_@%+=:,./-").encode("ascii")


@lru_cache(maxsize=1024)
def _region_option(region: str) -> str:
    return f"--region {shlex.quote(region)} " if region else ""


@lru_cache(maxsize=4096)
def _tags_option(tags: tuple[tuple[str, str], ...]) -> str:
    """``K=V,K2=V2`` quoted; the same few tag fixes recur across an estate, so they are built once."""
    return shlex.quote(",".join(f"{k}={v}" for k, v in tags))


#: (service, collections of the full name after projects/P) -> the gcloud command that sets labels on it;
#: {P} project, {N} name, {L} the location (zone or region) segment, {B} a bucket, {X} the parent's name
_GCP_LABEL_COMMANDS: dict[tuple[str, tuple[str, ...]], str] = {
    ("compute", ("zones", "instances")): "gcloud compute instances add-labels {N} --zone {L} --project {P} --labels",
    ("compute", ("zones", "disks")): "gcloud compute disks add-labels {N} --zone {L} --project {P} --labels",
    ("compute", ("regions", "disks")): "gcloud compute disks add-labels {N} --region {L} --project {P} --labels",
    ("storage", ("buckets",)): "gcloud storage buckets update gs://{N} --update-labels",
    ("cloudsql", ("instances",)): "gcloud sql instances patch {N} --project {P} --update-labels",
    ("container", ("locations", "clusters")): "gcloud container clusters update {N} --location {L} --project {P} "
                                              "--update-labels",
    ("container", ("zones", "clusters")): "gcloud container clusters update {N} --location {L} --project {P} "
                                          "--update-labels",
    ("bigquery", ("datasets",)): "bq update --set_label {PAIRS} {P}:{N}",
    ("pubsub", ("topics",)): "gcloud pubsub topics update {N} --project {P} --update-labels",
    ("run", ("locations", "services")): "gcloud run services update {N} --region {L} --project {P} --update-labels",
    ("spanner", ("instances",)): "gcloud spanner instances update {N} --project {P} --update-labels",
    ("secretmanager", ("secrets",)): "gcloud secrets update {N} --project {P} --update-labels",
}
_GCP_NAME = re.compile(r"^//([a-z0-9-]+)\.googleapis\.com/projects/([^/]+)/(.+)$")


def _gcp(resource: Observed, tags: Tags) -> str:
    name = resource.id
    if name.startswith(GCP_CRM + "projects/"):  # projects carry labels; keys are lower case in GCP
        labels = ",".join(f"{k.lower()}={v}" for k, v in tags)
        return f"gcloud projects update {shlex.quote(name.rsplit('/', 1)[-1])} --update-labels={shlex.quote(labels)}"
    below = _gcp_label_command(name, ",".join(f"{k.lower()}={v.lower()}" for k, v in tags))  # GCP: lower case
    if below is not None:
        return below
    # folders, organizations and other resources take tags, bound by namespaced value ORG/KEY/VALUE
    org = _GCP_ORG.search(resource.scope) or _GCP_ORG.search(name) or _GCP_ORG.search(resource.parent or "")
    org_id = org.group(1) if org else "ORGANIZATION_ID"
    return " && ".join(
        f"gcloud resource-manager tags bindings create --tag-value={shlex.quote(f'{org_id}/{k}/{v}')} "
        f"--parent={shlex.quote(name)}" for k, v in tags)


def _gcp_label_command(name: str, labels: str) -> str | None:
    """The gcloud (or bq) command that sets ``labels`` on a resource below a project, when envlabel knows it."""
    match = _GCP_NAME.match(name)
    if match is None:
        return None
    service, project, rest = match.groups()
    parts = rest.split("/")
    collections = tuple(parts[0::2])
    template = _GCP_LABEL_COMMANDS.get((service, collections))
    if template is None or len(parts) % 2:
        return None
    fields = {"P": project, "N": parts[-1], "L": parts[1] if len(parts) > 2 else "", "PAIRS": labels.replace("=", ":")}
    command = template.format(**{k: shlex.quote(v) for k, v in fields.items()})
    return command if "{PAIRS}" in template else f"{command} {shlex.quote(labels)}"


def _kubernetes(resource: Observed, tags: Tags) -> str | None:
    parts = resource.id.removeprefix("k8s://").split("/")
    labels = " ".join(shlex.quote(f"{k}={v}") for k, v in tags)
    cluster = shlex.quote(parts[0])
    if len(parts) == 1:  # a cluster's environment is configured (or comes from its EKS/GKE parent)
        return None
    if len(parts) == 3:
        kind = "namespace" if parts[1] == "namespaces" else parts[1]
        return f"kubectl --context {cluster} label {kind} {shlex.quote(parts[2])} {labels} --overwrite"
    namespace, kind, name = parts[1], parts[2], parts[3]
    return (f"kubectl --context {cluster} -n {shlex.quote(namespace)} label {kind} {shlex.quote(name)} {labels} "
            "--overwrite")


def rescan_command(source: str) -> str:
    return f"envlabel scan --source {shlex.quote(source)}"


def recovery_command(resource: Observed) -> str | None:
    """The command that makes deleting ``resource`` recoverable (an ``unrecoverable`` finding's fix), or None
    when envlabel knows none for its kind."""
    build = _RECOVERY_COMMANDS.get(resource.kind)
    return build(resource) if build is not None else None


def _arn_name(resource: Observed) -> tuple[str, str]:
    """(region option, the name after the resource type) of an AWS ARN: ``...:db:orders``, ``...:table/orders``."""
    parts = resource.id.split(":", 5)
    region = parts[3] if len(parts) > 3 else resource.region
    tail = _ARN_TYPE.split(parts[-1], maxsplit=1)
    return _region_option(region), shlex.quote(tail[-1])


def _rds_db(resource: Observed) -> str:
    region, name = _arn_name(resource)
    return (f"aws rds modify-db-instance {region}--db-instance-identifier {name} --deletion-protection "
            "--backup-retention-period 7 --apply-immediately")


def _rds_cluster(resource: Observed) -> str:
    region, name = _arn_name(resource)
    return (f"aws rds modify-db-cluster {region}--db-cluster-identifier {name} --deletion-protection "
            "--backup-retention-period 7 --apply-immediately")


def _s3_bucket(resource: Observed) -> str:
    bucket = resource.id.rsplit(":", 1)[-1]
    return f"aws s3api put-bucket-versioning --bucket {shlex.quote(bucket)} --versioning-configuration Status=Enabled"


def _dynamodb_table(resource: Observed) -> str:
    region, name = _arn_name(resource)
    return (f"aws dynamodb update-continuous-backups {region}--table-name {name} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true && "
            f"aws dynamodb update-table {region}--table-name {name} --deletion-protection-enabled")


def _kubernetes_claim(resource: Observed) -> str | None:
    volume = resource.facts.get("volume")
    if not volume:  # not bound yet: nothing to patch; the advice names the StorageClass
        return None
    cluster = shlex.quote(resource.id.removeprefix("k8s://").split("/", 1)[0])
    patch = shlex.quote('{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}')
    return f"kubectl --context {cluster} patch pv {shlex.quote(str(volume))} -p {patch}"


def _cloud_sql(resource: Observed) -> str:
    match = _GCP_NAME.match(resource.id)
    project = f" --project {shlex.quote(match.group(2))}" if match else ""
    name = shlex.quote(resource.id.rsplit("/", 1)[-1])
    return f"gcloud sql instances patch {name}{project} --deletion-protection --backup-start-time=03:00"


def _gcs_bucket(resource: Observed) -> str:
    return f"gcloud storage buckets update {shlex.quote('gs://' + resource.id.rsplit('/', 1)[-1])} --versioning"


_RECOVERY_COMMANDS: dict[str, Callable[[Observed], str | None]] = {
    "rds:db": _rds_db,
    "rds:cluster": _rds_cluster,
    "s3:bucket": _s3_bucket,
    "dynamodb:table": _dynamodb_table,
    "k8s:persistentvolumeclaims": _kubernetes_claim,
    "sqladmin.Instance": _cloud_sql,
    "storage.Bucket": _gcs_bucket,
}
