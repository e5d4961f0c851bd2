"""Target ids: the strings agents pass in, parsed and made canonical.

Accepted forms (DESIGN.md, "Targets"):

>>> parse_target("222222222222").id
'222222222222'
>>> parse_target("arn:aws:organizations::111111111111:account/o-abc/222222222222").id
'222222222222'
>>> parse_target("k8s://prod-eu/payments/deploy/api").id
'k8s://prod-eu/payments/deployments/api'
>>> parse_target("projects/my-proj").id
'//cloudresourcemanager.googleapis.com/projects/my-proj'
>>> parse_target("projects/my-proj/zones/us-central1-a/instances/vm1").id
'//compute.googleapis.com/projects/my-proj/zones/us-central1-a/instances/vm1'
>>> parse_target("gs://logs-archive/2024/app.log").id
'//storage.googleapis.com/projects/_/buckets/logs-archive'

GCP names below a project (docs/gcp.md, "Targets below the project"): a full resource name
``//SERVICE.googleapis.com/projects/P/...`` as Cloud Asset Inventory names it, a ``projects/P/...`` relative
name as gcloud prints it (its service is read off its collections, :data:`GCP_COLLECTIONS`; a shape several
services share is refused, asking for the full name) and ``gs://BUCKET[/OBJECT]`` (the bucket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envlabel.errors import TargetError

ACCEPTED_FORMS = (
    "accepted target forms: an AWS ARN (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE) or a 12-digit "
    "account id; k8s://CLUSTER/NAMESPACE/KIND/NAME or k8s://CLUSTER/KIND/NAME (a namespace is "
    "k8s://CLUSTER/namespaces/NAME); a GCP full resource name "
    "(//SERVICE.googleapis.com/projects/P/..., e.g. //compute.googleapis.com/projects/P/zones/Z/instances/I), "
    "projects/ID, folders/N, organizations/N, a relative name gcloud prints (projects/P/zones/Z/instances/I) "
    "or gs://BUCKET"
)

GCP_CRM = "//cloudresourcemanager.googleapis.com/"

_ACCOUNT = re.compile(r"^\d{12}$")
_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):([a-z0-9-]+):([a-z0-9-]*):(\d{12}|aws|):(.+)$")
_ORG_ACCOUNT = re.compile(r"^account/o-[a-z0-9]+/(\d{12})$")
_GCP_SHORT = re.compile(r"^(projects|folders|organizations)/([a-z0-9][a-z0-9-]{0,62})$")
_GCP_FULL = re.compile(r"^//([a-z0-9][a-z0-9-]*)\.googleapis\.com/(\S+)$")
#: one segment of a GCP resource name: no empty segment, no ``.``/``..``, nothing a URL would read differently
_GCP_SEGMENT = re.compile(r"^[A-Za-z0-9_~@+=,:-][A-Za-z0-9_.~@+=,:-]*$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
GCS_BUCKET_PREFIX = "//storage.googleapis.com/projects/_/buckets/"
_K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$")

# kubectl's names for the built-in kinds -> the canonical (plural, lowercase) resource name.
_K8S_KINDS: dict[str, tuple[str, ...]] = {
    "namespaces": ("namespace", "ns"),
    "nodes": ("node", "no"),
    "deployments": ("deployment", "deploy"),
    "statefulsets": ("statefulset", "sts"),
    "daemonsets": ("daemonset", "ds"),
    "replicasets": ("replicaset", "rs"),
    "jobs": ("job",),
    "cronjobs": ("cronjob", "cj"),
    "services": ("service", "svc"),
    "ingresses": ("ingress", "ing"),
    "persistentvolumeclaims": ("persistentvolumeclaim", "pvc"),
    "persistentvolumes": ("persistentvolume", "pv"),
    "storageclasses": ("storageclass", "sc"),
    "configmaps": ("configmap", "cm"),
    "secrets": ("secret",),
    "pods": ("pod", "po"),
    "serviceaccounts": ("serviceaccount", "sa"),
}
K8S_KIND_ALIASES: dict[str, str] = {
    alias: plural for plural, aliases in _K8S_KINDS.items() for alias in (plural, *aliases)
}
#: kinds that are never inside a namespace
K8S_CLUSTER_SCOPED = frozenset({"namespaces", "nodes", "persistentvolumes", "storageclasses"})


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    provider: str


def canonical_k8s_kind(kind: str) -> str:
    """Canonical resource name for a kind as kubectl accepts it (``Deployment``, ``deploy``...)."""
    lowered = kind.lower()
    if lowered in K8S_KIND_ALIASES:
        return K8S_KIND_ALIASES[lowered]
    if "." in lowered:  # resource.group, as kubectl accepts for custom resources
        return lowered
    return lowered if lowered.endswith("s") else lowered + "s"


def k8s_target(cluster: str, kind: str, name: str, namespace: str | None = None) -> str:
    kind = canonical_k8s_kind(kind)
    if namespace:
        return f"k8s://{cluster}/{namespace}/{kind}/{name}"
    return f"k8s://{cluster}/{kind}/{name}"


def parse_target(raw: str) -> Target:
    """Parse ``raw`` into its canonical id, or raise :class:`TargetError` naming the accepted forms."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise TargetError(f"empty target; {ACCEPTED_FORMS}")
    if _ACCOUNT.match(text):
        return Target(text, "aws")
    if text.startswith("arn:"):
        return _parse_arn(text)
    if text.startswith("k8s://"):
        return _parse_k8s(text)
    if text.startswith(("//", "gs://", "projects/", "folders/", "organizations/")):
        return Target(_gcp_name(text), "gcp")
    raise TargetError(f"unrecognized target {raw!r}; {ACCEPTED_FORMS}")


def _gcp_name(text: str) -> str:
    if text.startswith("//"):
        return gcp_full_name(text)
    if text.startswith("gs://"):
        return gcs_bucket_name(text)
    if _GCP_SHORT.match(text):
        return GCP_CRM + text
    if text.startswith("projects/"):
        return gcp_relative_name(text)
    raise TargetError(f"unrecognized target {text!r}; {ACCEPTED_FORMS}")


def _parse_arn(text: str) -> Target:
    match = _ARN.match(text)
    if not match:
        raise TargetError(f"malformed ARN {text!r}; {ACCEPTED_FORMS}")
    service, resource = match.group(2), match.group(5)
    if service == "organizations":
        account = _ORG_ACCOUNT.match(resource)
        if account:  # an account ARN names the account, stored by its id
            return Target(account.group(1), "aws")
    return Target(text, "aws")


def _parse_k8s(text: str) -> Target:
    parts = text[len("k8s://"):].split("/")
    if any(not p or not _K8S_NAME.match(p) for p in parts) or len(parts) not in (1, 3, 4):
        raise TargetError(f"malformed Kubernetes target {text!r}; {ACCEPTED_FORMS}")
    cluster = parts[0]
    if len(parts) == 1:
        return Target(f"k8s://{cluster}", "kubernetes")
    if len(parts) == 3:
        kind = canonical_k8s_kind(parts[1])
        return Target(f"k8s://{cluster}/{kind}/{parts[2]}", "kubernetes")
    kind = canonical_k8s_kind(parts[2])
    if kind in K8S_CLUSTER_SCOPED:
        raise TargetError(f"{kind} are cluster-scoped: use k8s://{cluster}/{kind}/{parts[3]}; {ACCEPTED_FORMS}")
    return Target(f"k8s://{cluster}/{parts[1]}/{kind}/{parts[3]}", "kubernetes")


# -- GCP names below the project -------------------------------------------------------------------
#: the collections of a relative name after ``projects/P`` (``global`` counts as a collection without an id)
#: -> the service whose full name it is, matched on the longest prefix; None: several services name their
#: resources so (``projects/P/instances/I`` is Cloud SQL, Spanner and Bigtable): the full name is needed
GCP_COLLECTIONS: dict[tuple[str, ...], str | None] = {
    ("zones",): "compute", ("regions",): "compute", ("global",): "compute",
    ("zones", "clusters"): "container", ("regions", "clusters"): "dataproc",
    ("buckets",): "storage",
    ("topics",): "pubsub", ("subscriptions",): "pubsub", ("snapshots",): "pubsub", ("schemas",): "pubsub",
    ("datasets",): "bigquery",
    ("secrets",): "secretmanager",
    ("serviceAccounts",): "iam",
    ("instances",): None,
    ("locations",): None,
    ("locations", "functions"): "cloudfunctions",
    ("locations", "keyRings"): "cloudkms",
    ("locations", "queues"): "cloudtasks",
    ("locations", "secrets"): "secretmanager",
}
#: a service's other host names -> the one Cloud Asset Inventory names its resources with
_GCP_SERVICE_ALIASES = {"sqladmin": "cloudsql", "www": ""}


def gcp_full_name(text: str) -> str:
    """``//SERVICE.googleapis.com/NAME`` checked segment by segment; a bucket's old ``//storage.googleapis.com/B``
    form becomes its Cloud Asset name, ``//sqladmin...`` is ``//cloudsql...`` (as Cloud Asset names it)."""
    match = _GCP_FULL.match(text)
    if not match or not all(_GCP_SEGMENT.match(p) for p in match.group(2).split("/")):
        raise TargetError(f"malformed GCP resource name {text!r}; {ACCEPTED_FORMS}")
    service, name = _GCP_SERVICE_ALIASES.get(match.group(1), match.group(1)), match.group(2)
    if not service:
        raise TargetError(f"{text!r} names no service (//SERVICE.googleapis.com/...); {ACCEPTED_FORMS}")
    if service == "storage" and "/" not in name:
        return gcs_bucket_name(f"gs://{name}")
    if service == "storage" and name.startswith("projects/") and name.count("/") == 3:
        _, project, collection, bucket = name.split("/")
        if collection == "buckets" and project != "_":  # bucket names are global: Cloud Asset writes projects/_
            return gcs_bucket_name(f"gs://{bucket}")
    return f"//{service}.googleapis.com/{name}"


def gcs_bucket_name(text: str) -> str:
    """``gs://BUCKET[/OBJECT]`` -> the bucket's Cloud Asset name (an object is not a target of its own: the
    bucket's label decides for everything in it)."""
    bucket = text.removeprefix("gs://").partition("/")[0]
    if not _GCS_BUCKET.match(bucket) or ".." in bucket:
        raise TargetError(f"malformed Cloud Storage bucket {text!r}: gs://BUCKET with a bucket name of lower case "
                          f"letters, digits, '-', '_' and '.'; {ACCEPTED_FORMS}")
    return GCS_BUCKET_PREFIX + bucket


def gcp_relative_name(text: str) -> str:
    """``projects/P/COLLECTION/ID/...`` -> its full name, the service read off its collections
    (:data:`GCP_COLLECTIONS`); raises TargetError when the shape is unknown or several services share it."""
    parts = text.split("/")
    project_ok = parts[1] == "_" or _GCP_SHORT.match("/".join(parts[:2])) is not None
    if len(parts) < 3 or not project_ok or not all(_GCP_SEGMENT.match(p) for p in parts):
        raise TargetError(f"malformed GCP resource name {text!r}; {ACCEPTED_FORMS}")
    collections = _collections(parts[2:])
    if collections is None:
        raise TargetError(f"malformed GCP resource name {text!r}: after projects/P it alternates COLLECTION/ID "
                          f"(global has no id); {ACCEPTED_FORMS}")
    found = next(((collections[:n], GCP_COLLECTIONS[collections[:n]]) for n in range(len(collections), 0, -1)
                  if collections[:n] in GCP_COLLECTIONS), None)
    if found is None or found[1] is None:
        shape = "/".join(f"{c}/*" if c != "global" else c for c in collections)
        why = "is named so by several GCP services" if found else "is not a shape envlabel maps to a service"
        raise TargetError(f"{text!r}: projects/*/{shape} {why}; pass the full resource name "
                          f"//SERVICE.googleapis.com/{text} (SERVICE as Cloud Asset Inventory names it: cloudsql, "
                          "spanner, run, container...)")
    return gcp_full_name(f"//{found[1]}.googleapis.com/{text}")


def _collections(rest: list[str]) -> tuple[str, ...] | None:
    """The collection names of the segments after ``projects/P``; None when an id is missing."""
    found: list[str] = []
    i = 0
    while i < len(rest):
        found.append(rest[i])
        i += 1 if rest[i] == "global" else 2
    return tuple(found) if i == len(rest) or rest[-1] == "global" else None


def gcp_project_of(target_id: str) -> str | None:
    """The project a GCP full resource name sits in, as the scanner stores projects
    (``//cloudresourcemanager.googleapis.com/projects/P``); None: the name does not say (a bucket, a project,
    a folder or an organization)."""
    match = _GCP_FULL.match(target_id)
    if not match or target_id.startswith(GCP_CRM):
        return None
    parts = match.group(2).split("/")
    if len(parts) < 3 or parts[0] != "projects" or parts[1] == "_":
        return None
    return f"{GCP_CRM}projects/{parts[1]}"


#: Cloud Asset names a service's resources by one host and their asset types by another
_GCP_ASSET_SERVICES = {"cloudsql": "sqladmin"}


def gcp_asset_type(target_id: str) -> str | None:
    """The Cloud Asset type of a full resource name below a project, read off its last collection
    (``//compute.googleapis.com/projects/P/zones/Z/instances/I`` -> ``compute.googleapis.com/Instance``,
    ``//cloudsql...`` -> ``sqladmin.googleapis.com/Instance``); None for anything else."""
    match = _GCP_FULL.match(target_id)
    if not match or target_id.startswith(GCP_CRM):
        return None
    parts = [p for p in match.group(2).split("/") if p != "global"]  # compute's global has no id
    if len(parts) < 4 or len(parts) % 2:
        return None
    collection = parts[-2]
    singular = collection[:-3] + "y" if collection.endswith("ies") else (
        collection[:-2] if collection.endswith(("sses", "shes", "ches")) else collection.removesuffix("s"))
    service = _GCP_ASSET_SERVICES.get(match.group(1), match.group(1))
    return f"{service}.googleapis.com/{singular[:1].upper()}{singular[1:]}"
