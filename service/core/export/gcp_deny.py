"""``envlabel export gcp-deny``: IAM deny policies for the GCP folders and projects labeled production.

One file per attachment point, ``gcp-deny/folders-N.json`` or ``gcp-deny/projects-ID.json``: an IAM v2
``Policy`` whose ``name`` carries the URL-encoded attachment point and policy id, ready for::

    gcloud iam policies create envlabel-protect-production --kind=denypolicies \\
        --attachment-point=cloudresourcemanager.googleapis.com/projects/ID --policy-file=projects-ID.json

Each policy has one rule denying the delete class (and, with ``include_modify``, the modify class)
to every principal (``principalSet://goog/public:all``) except ``gcp_exception_principals``.

Where a policy is attached: a deny policy is inherited by everything below its attachment point and cannot
be lifted lower down, so a folder gets one only when it and every live folder and project below it are
protected; then nothing below it needs its own (a project created there later is covered at once).
Otherwise each protected project (and fully protected subfolder) below gets its own. A project overridden to
sandbox under a production folder therefore keeps its folder from being attached, rather than being denied
deletes it is allowed. Organizations are never attached to.

The permissions a policy may deny are a curated list of common services' (:data:`DENIABLE`), each one Google
lists as supported in deny policies (https://cloud.google.com/iam/docs/deny-permissions-support); extend it with
care, since a permission deny policies do not support makes ``gcloud iam policies create`` refuse the whole
policy. Which of them are denied is the vocabulary's: those it classes delete (and modify, with
``include_modify``), written in the IAM v2 form deny policies require (``SERVICE.googleapis.com/RESOURCE.VERB``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

from envlabel.actions import classify
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.export import Artifact, ExportOptions, dump_json
from envlabel.service.core.export.labeled import Labeled, iter_labeled
from envlabel.service.core.query import Query
from envlabel.targets import GCP_CRM

KIND = "gcp-deny"
ATTACHABLE = frozenset({"gcp:folder", "gcp:project"})
TREE = ATTACHABLE | {"gcp:organization"}

#: the permissions a generated policy may deny, in IAM v1 form: common services' permissions that Google lists as
#: supported in deny policies (curated: a permission deny policies do not support makes ``gcloud iam policies
#: create`` refuse the whole policy). Which of them are denied is the vocabulary's: :func:`permissions_of`.
DENIABLE: tuple[str, ...] = (
    "bigquery.datasets.delete",
    "bigquery.datasets.update",
    "bigquery.tables.delete",
    "bigquery.tables.update",
    "bigquery.tables.updateData",
    "cloudsql.instances.delete",
    "compute.disks.delete",
    "compute.instances.delete",
    "container.clusters.delete",
    "pubsub.topics.delete",
    "resourcemanager.projects.delete",
    "secretmanager.secrets.delete",
    "spanner.instances.delete",
    "storage.buckets.delete",
    "storage.buckets.update",
    "storage.objects.delete",
)
#: IAM v1 service prefix -> the service name of the IAM v2 form, where it is not ``PREFIX.googleapis.com``
V2_SERVICES = {"resourcemanager": "cloudresourcemanager.googleapis.com"}


def v2_name(permission: str) -> str:
    """``bigquery.tables.delete`` -> ``bigquery.googleapis.com/tables.delete``, the form deny policies take."""
    service, _, rest = permission.partition(".")
    return f"{V2_SERVICES.get(service, f'{service}.googleapis.com')}/{rest}"


def permissions_of(classes: Iterable[str]) -> tuple[str, ...]:
    """The :data:`DENIABLE` permissions the vocabulary (``envlabel/data/gcp-permissions.json``, the table every
    check classifies GCP permissions by) puts in ``classes``, in IAM v2 form, sorted."""
    wanted = set(classes)
    return tuple(sorted(v2_name(p) for p in DENIABLE if classify(p).action_class in wanted))


#: the delete class of :data:`DENIABLE`, and what ``include_modify`` adds
DELETE_PERMISSIONS: tuple[str, ...] = permissions_of(("delete",))
MODIFY_PERMISSIONS: tuple[str, ...] = permissions_of(("modify",))
#: every principal; the exceptions are the break-glass identities
EVERYONE = "principalSet://goog/public:all"
EXCEPTION_FORMS = ("principal://", "principalSet://")
#: IAM v2 limits: exception principals per policy, displayName and rule description lengths
MAX_PRINCIPALS = 500
MAX_DISPLAY_NAME = 63
MAX_DESCRIPTION = 256


def export(query: Query, options: ExportOptions) -> list[Artifact]:
    """One deny policy per protected folder or project attachment point (see the module docstring)."""
    exceptions = exception_principals(options.gcp_exception_principals)
    nodes = {n.id: n for n in iter_labeled(query, "gcp", TREE)}
    protected = {i for i, n in nodes.items() if n.kind in ATTACHABLE and n.environment in options.environments}
    children: dict[str, list[str]] = {}
    for n in nodes.values():
        if n.parent is not None and n.parent in nodes:
            children.setdefault(n.parent, []).append(n.id)
    permissions = sorted(DELETE_PERMISSIONS + (MODIFY_PERMISSIONS if options.include_modify else ()))
    return [policy_artifact(nodes[i], permissions, exceptions)
            for i in sorted(attachment_points(nodes, children, protected))]


def exception_principals(principals: Iterable[str]) -> list[str]:
    """The exception principals, checked: deny policies take only IAM v2 principal identifiers."""
    checked = sorted(set(principals))
    for p in checked:
        if not p.startswith(EXCEPTION_FORMS) or p == EVERYONE:
            raise InvalidRequest("export.gcp_exception_principals", (
                f"{p!r} is not an IAM v2 principal a deny policy can exempt; write it as "
                "principal://goog/subject/EMAIL, principalSet://goog/group/GROUP_EMAIL or "
                "principal://iam.googleapis.com/projects/-/serviceAccounts/SA_EMAIL"))
    if len(checked) > MAX_PRINCIPALS:
        raise InvalidRequest("export.gcp_exception_principals",
                             f"{len(checked)} principals; a deny policy exempts at most {MAX_PRINCIPALS}: "
                             "exempt a group (principalSet://goog/group/...) instead")
    return checked


def attachment_points(nodes: dict[str, Labeled], children: dict[str, list[str]], protected: set[str]) -> set[str]:
    """The highest protected nodes whose whole subtree is protected, plus protected projects not under one."""
    whole: dict[str, bool] = {}

    def fully_protected(node: str) -> bool:
        if node not in whole:
            whole[node] = node in protected and all(fully_protected(c) for c in children.get(node, ()))
        return whole[node]

    chosen: set[str] = set()
    stack = [i for i, n in nodes.items() if n.parent is None or n.parent not in nodes]
    while stack:
        node = stack.pop()
        if node in protected and (nodes[node].kind == "gcp:project" or fully_protected(node)):
            chosen.add(node)  # everything below inherits this policy
            continue
        stack.extend(children.get(node, ()))
    return chosen


def attachment_point(resource_id: str) -> str:
    """``//cloudresourcemanager.googleapis.com/projects/ID`` -> the documented URL-encoded attachment point."""
    return quote(resource_id.removeprefix("//"), safe="")


def policy_artifact(node: Labeled, permissions: list[str], exceptions: list[str]) -> Artifact:
    short = node.id.removeprefix(GCP_CRM)  # folders/N or projects/ID
    # policy ids are lowercase letters, digits and hyphens, at most 63 characters
    policy_id = re.sub(r"[^a-z0-9-]+", "-", f"envlabel-protect-{node.environment}".lower())[:63].rstrip("-")
    what = "folder" if node.kind == "gcp:folder" else "project"
    description = (f"envlabel: {short} ({node.name}) is labeled {node.describe()} (decided by {node.decided_by}); "
                   "deletes are refused to everyone but the exception principals. Re-run envlabel export "
                   "gcp-deny after relabeling.")
    body = {
        "name": f"policies/{attachment_point(node.id)}/denypolicies/{policy_id}",
        "displayName": f"envlabel: {node.environment} {what} {node.name}"[:MAX_DISPLAY_NAME],
        "rules": [{
            "description": description[:MAX_DESCRIPTION],
            "denyRule": {
                "deniedPrincipals": [EVERYONE],
                "exceptionPrincipals": exceptions,
                "deniedPermissions": permissions,
            },
        }],
    }
    return Artifact(f"{KIND}/{short.replace('/', '-')}.json", dump_json(body), (node.id,))
