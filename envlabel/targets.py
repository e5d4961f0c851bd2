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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envlabel.errors import TargetError

ACCEPTED_FORMS = (
    "accepted target forms: an AWS ARN (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE) or a 12-digit "
    "account id; k8s://CLUSTER/NAMESPACE/KIND/NAME or k8s://CLUSTER/KIND/NAME (a namespace is "
    "k8s://CLUSTER/namespaces/NAME); a GCP full resource name "
    "(//cloudresourcemanager.googleapis.com/projects/ID) or projects/ID, folders/N, organizations/N"
)

GCP_CRM = "//cloudresourcemanager.googleapis.com/"

_ACCOUNT = re.compile(r"^\d{12}$")
_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):([a-z0-9-]+):([a-z0-9-]*):(\d{12}|aws|):(.+)$")
_ORG_ACCOUNT = re.compile(r"^account/o-[a-z0-9]+/(\d{12})$")
_GCP_SHORT = re.compile(r"^(projects|folders|organizations)/([a-z0-9][a-z0-9-]{0,62})$")
_GCP_FULL = re.compile(r"^//[a-z0-9.-]+\.googleapis\.com/\S+$")
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
    "configmaps": ("configmap", "cm"),
    "secrets": ("secret",),
    "pods": ("pod", "po"),
    "serviceaccounts": ("serviceaccount", "sa"),
}
K8S_KIND_ALIASES: dict[str, str] = {
    alias: plural for plural, aliases in _K8S_KINDS.items() for alias in (plural, *aliases)
}
#: kinds that are never inside a namespace
K8S_CLUSTER_SCOPED = frozenset({"namespaces", "nodes", "persistentvolumes"})


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
    if text.startswith("//"):
        if not _GCP_FULL.match(text):
            raise TargetError(f"malformed GCP resource name {raw!r}; {ACCEPTED_FORMS}")
        return Target(text, "gcp")
    if _GCP_SHORT.match(text):
        return Target(GCP_CRM + text, "gcp")
    raise TargetError(f"unrecognized target {raw!r}; {ACCEPTED_FORMS}")


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
