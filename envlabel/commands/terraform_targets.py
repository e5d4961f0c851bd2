"""The target and action of one planned resource change, per provider (AWS, Google, Kubernetes and Helm). Pure.

:mod:`envlabel.commands.terraform` reads the plan and calls :func:`operation_of` for each change with the
resource's attribute values and what its provider configuration says (:class:`Scope`). An existing resource
(delete, update, the delete half of a replacement) is named by its own id: the ``arn`` attribute, else one
built from its name or id (:data:`AWS_TYPES`), ``projects/ID``, ``k8s://CLUSTER/NS/KIND/NAME``. A create is
decided against the container it is made in: the account, the project (or a new project's folder), the
namespace. Anything that cannot be named raises :class:`Unnamed`, and the caller decides it as production.

    >>> values = {"arn": "arn:aws:rds:us-east-1:222222222222:db:orders", "identifier": "orders"}
    >>> operation_of("aws", "aws_db_instance", "delete", values, Scope()).action
    'rds:DeleteDBInstance'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envlabel.commands import Operation
from envlabel.errors import TargetError
from envlabel.guard.arns import partition_of
from envlabel.targets import K8S_KIND_ALIASES, k8s_target, parse_target

#: what a change does to the resource, which decides the generic verb it is checked with
DELETE, UPDATE, CREATE = "delete", "update", "create"

#: resource type -> (the attribute naming it, its ARN with {p}artition, {r}egion, {a}ccount and {v}alue, the AWS
#: operation that deletes it). Used when the resource has no ``arn`` attribute, and for the delete action
#: whenever the type is listed; every action here is classified ``delete`` (tests hold this)
AWS_TYPES: dict[str, tuple[str, str, str]] = {
    "aws_db_instance": ("identifier", "arn:{p}:rds:{r}:{a}:db:{v}", "rds:DeleteDBInstance"),
    "aws_rds_cluster": ("cluster_identifier", "arn:{p}:rds:{r}:{a}:cluster:{v}", "rds:DeleteDBCluster"),
    "aws_s3_bucket": ("bucket", "arn:{p}:s3:::{v}", "s3:DeleteBucket"),
    "aws_instance": ("id", "arn:{p}:ec2:{r}:{a}:instance/{v}", "ec2:TerminateInstances"),
    "aws_vpc": ("id", "arn:{p}:ec2:{r}:{a}:vpc/{v}", "ec2:DeleteVpc"),
    "aws_subnet": ("id", "arn:{p}:ec2:{r}:{a}:subnet/{v}", "ec2:DeleteSubnet"),
    "aws_security_group": ("id", "arn:{p}:ec2:{r}:{a}:security-group/{v}", "ec2:DeleteSecurityGroup"),
    "aws_ebs_volume": ("id", "arn:{p}:ec2:{r}:{a}:volume/{v}", "ec2:DeleteVolume"),
    "aws_lambda_function": ("function_name", "arn:{p}:lambda:{r}:{a}:function:{v}", "lambda:DeleteFunction"),
    "aws_dynamodb_table": ("name", "arn:{p}:dynamodb:{r}:{a}:table/{v}", "dynamodb:DeleteTable"),
    "aws_eks_cluster": ("name", "arn:{p}:eks:{r}:{a}:cluster/{v}", "eks:DeleteCluster"),
    "aws_sqs_queue": ("name", "arn:{p}:sqs:{r}:{a}:{v}", "sqs:DeleteQueue"),
    "aws_sns_topic": ("name", "arn:{p}:sns:{r}:{a}:{v}", "sns:DeleteTopic"),
    "aws_ecr_repository": ("name", "arn:{p}:ecr:{r}:{a}:repository/{v}", "ecr:DeleteRepository"),
    "aws_efs_file_system": ("id", "arn:{p}:elasticfilesystem:{r}:{a}:file-system/{v}",
                            "elasticfilesystem:DeleteFileSystem"),
    "aws_elasticache_cluster": ("cluster_id", "arn:{p}:elasticache:{r}:{a}:cluster:{v}",
                                "elasticache:DeleteCacheCluster"),
    "aws_kinesis_stream": ("name", "arn:{p}:kinesis:{r}:{a}:stream/{v}", "kinesis:DeleteStream"),
    "aws_cloudwatch_log_group": ("name", "arn:{p}:logs:{r}:{a}:log-group:{v}", "logs:DeleteLogGroup"),
    "aws_kms_key": ("key_id", "arn:{p}:kms:{r}:{a}:key/{v}", "kms:ScheduleKeyDeletion"),
    "aws_secretsmanager_secret": ("arn", "{v}", "secretsmanager:DeleteSecret"),
    "aws_ecs_cluster": ("name", "arn:{p}:ecs:{r}:{a}:cluster/{v}", "ecs:DeleteCluster"),
    "aws_redshift_cluster": ("cluster_identifier", "arn:{p}:redshift:{r}:{a}:cluster:{v}", "redshift:DeleteCluster"),
}

#: the Kubernetes provider's resource types (``kubernetes_`` and any ``_v1``/``_v2`` suffix dropped) -> the plural
#: resource name of envlabel's targets
K8S_TYPES: dict[str, str] = {
    "deployment": "deployments", "stateful_set": "statefulsets", "daemonset": "daemonsets",
    "daemon_set": "daemonsets", "replication_controller": "replicationcontrollers", "job": "jobs",
    "cron_job": "cronjobs", "pod": "pods", "service": "services", "ingress": "ingresses",
    "config_map": "configmaps", "secret": "secrets", "persistent_volume_claim": "persistentvolumeclaims",
    "service_account": "serviceaccounts", "role": "roles", "role_binding": "rolebindings",
    "network_policy": "networkpolicies", "limit_range": "limitranges", "resource_quota": "resourcequotas",
    "horizontal_pod_autoscaler": "horizontalpodautoscalers", "pod_disruption_budget": "poddisruptionbudgets",
    "endpoints": "endpoints", "endpoint_slice": "endpointslices", "namespace": "namespaces",
    "persistent_volume": "persistentvolumes", "cluster_role": "clusterroles",
    "cluster_role_binding": "clusterrolebindings", "storage_class": "storageclasses",
    "priority_class": "priorityclasses", "csi_driver": "csidrivers", "runtime_class": "runtimeclasses",
    "mutating_webhook_configuration": "mutatingwebhookconfigurations",
    "validating_webhook_configuration": "validatingwebhookconfigurations",
}
#: plural resource names that are never inside a namespace
K8S_CLUSTER_SCOPED = frozenset({
    "namespaces", "nodes", "persistentvolumes", "clusterroles", "clusterrolebindings", "storageclasses",
    "priorityclasses", "csidrivers", "runtimeclasses", "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations", "customresourcedefinitions", "apiservices",
})
_K8S_KIND_PLURALS = {type_.replace("_", ""): plural for type_, plural in K8S_TYPES.items()} | K8S_KIND_ALIASES
_VERSION_SUFFIX = re.compile(r"_v\d+$")
_ARN_ACCOUNT = re.compile(r"^arn:[a-z-]+:[a-z0-9-]+:([a-z0-9-]*):(\d{12}):")


class Unnamed(Exception):
    """No target can be named for a change (not an error: the change is decided as production); ``str(e)``
    says why and what would name it."""


@dataclass(slots=True)
class Scope:
    """What the provider configuration of a resource says about where its resources live (each field None
    when it says nothing, or several things)."""

    #: the provider configuration, as the messages name it (``aws``, ``aws.west``, ``module.db:aws``)
    name: str = ""
    account: str | None = None
    region: str | None = None
    #: where ``account`` came from (``allowed_account_ids``, ``the ARNs of the other resources``...)
    account_from: str = ""
    #: why there is no account, when the configuration names several
    account_problem: str = ""
    project: str | None = None
    #: the envlabel cluster the Kubernetes/Helm provider talks to, and how that was found
    cluster: str | None = None
    cluster_from: str = ""
    cluster_problem: str = ""


def operation_of(provider: str, type_: str, effect: str, values: Mapping[str, Any], scope: Scope) -> Operation:
    """The operation the check decides for one change of a resource of ``provider`` (the registry name's last
    part: ``aws``, ``google``, ``kubernetes``...), or raise :class:`Unnamed`."""
    if provider == "aws":
        operation = aws_operation(type_, effect, values, scope)
    elif provider in ("google", "google-beta"):
        operation = google_operation(type_, effect, values, scope)
    elif provider in ("kubernetes", "kubectl", "helm"):
        operation = kubernetes_operation(type_, effect, values, scope)
    else:
        raise Unnamed(f"envlabel does not know where resources of the {provider} provider live")
    try:
        parse_target(operation.target)
    except TargetError as exc:  # a value envlabel cannot place: decided as production, never guessed around
        raise Unnamed(f"its target {operation.target!r} is not one envlabel accepts ({exc})") from None
    return operation


# -- AWS --------------------------------------------------------------------------------------------
def aws_operation(type_: str, effect: str, values: Mapping[str, Any], scope: Scope) -> Operation:
    """An existing resource by its ARN (its ``arn``, else built from :data:`AWS_TYPES`, else the bucket an S3
    sub-resource configures, else its account with ``contents``); a create against its account."""
    known = AWS_TYPES.get(type_)
    arn = _text(values.get("arn"))
    if effect == CREATE:
        account, where = aws_account(arn, scope)
        return Operation("terraform", account, CREATE, note=f"created in account {account} ({where})")
    if arn and arn.startswith("arn:"):
        action = known[2] if known and effect == DELETE else effect
        return Operation("terraform", arn, action, note="its arn attribute")
    if known:
        attribute, template, delete = known
        value = _text(values.get(attribute))
        if value and "{a}" not in template:
            target = template.format(p=partition_of(scope.region or ""), v=value)
            return Operation("terraform", target, delete if effect == DELETE else effect,
                             note=f"its {attribute} attribute")
        if value:
            account, where = aws_account(None, scope)
            region = _text(values.get("region")) or scope.region
            if region is None:
                raise Unnamed(f"it has no arn attribute and its region is unknown: set region in the provider "
                              f"configuration {scope.name}")
            target = template.format(p=partition_of(region), r=region, a=account, v=value)
            return Operation("terraform", target, delete if effect == DELETE else effect,
                             note=f"built from its {attribute} in account {account} ({where}), region {region}")
    bucket = _text(values.get("bucket"))
    if type_.startswith(("aws_s3_bucket_", "aws_s3_object")) and bucket:
        return Operation("terraform", f"arn:aws:s3:::{bucket}", effect, note=f"it configures bucket {bucket}")
    account, where = aws_account(None, scope)
    return Operation("terraform", account, effect, contents=True,
                     note=f"{type_} names no ARN: decided as the strictest label in account {account} ({where})")


def aws_account(arn: str | None, scope: Scope) -> tuple[str, str]:
    """The account a resource is in, and how that is known: its own ARN, else its provider configuration."""
    match = _ARN_ACCOUNT.match(arn or "")
    if match:
        return match[2], "its arn attribute"
    if scope.account:
        return scope.account, scope.account_from
    problem = scope.account_problem or (
        f"the provider configuration {scope.name or 'aws'} names no account and no other resource of it has an ARN")
    raise Unnamed(f"the account it is in is unknown: {problem}; set allowed_account_ids (or assume_role) in the "
                  "provider block")


# -- Google -----------------------------------------------------------------------------------------
def google_operation(type_: str, effect: str, values: Mapping[str, Any], scope: Scope) -> Operation:
    """A project or folder by its id (a create against its parent); anything else against its project."""
    if type_ in ("google_project", "google_folder"):
        return _google_container(type_, effect, values)
    project = _text(values.get("project"))
    if project:
        return Operation("terraform", f"projects/{project.removeprefix('projects/')}", effect,
                         note="its project attribute")
    for attribute, kind in (("folder", "folders"), ("org_id", "organizations")):
        container = _gcp_id(kind, values.get(attribute))
        if container:
            return Operation("terraform", container, effect, note=f"its {attribute} attribute")
    if scope.project:
        return Operation("terraform", f"projects/{scope.project}", effect,
                         note=f"the project of provider configuration {scope.name}")
    raise Unnamed("it names no project and neither does its provider configuration: set project in the "
                  "provider block or on the resource")


def _google_container(type_: str, effect: str, values: Mapping[str, Any]) -> Operation:
    """A project or folder itself (deleting it deletes what it holds: ``contents``), or, created, its parent."""
    if type_ == "google_project":
        own = _gcp_id("projects", values.get("project_id"))
    else:
        own = _gcp_id("folders", values.get("folder_id") or values.get("name"))
    if effect != CREATE and own:
        return Operation("terraform", own, effect, contents=effect == DELETE, note=f"its id {own}")
    return _google_parent(type_, effect, values, type_.removeprefix("google_"))


def _google_parent(type_: str, effect: str, values: Mapping[str, Any], what: str) -> Operation:
    for attribute, kind in (("folder_id", "folders"), ("parent", "folders"), ("org_id", "organizations")):
        raw = values.get(attribute)
        container = _gcp_id("organizations" if str(raw).startswith("organizations/") else kind, raw)
        if container:
            return Operation("terraform", container, effect,
                             note=f"the {what} is made in {container} (its {attribute})")
    raise Unnamed(f"{type_} names neither itself nor its parent folder or organization")


def _gcp_id(kind: str, raw: object) -> str | None:
    text = _text(raw)
    if not text:
        return None
    return f"{kind}/{text.rpartition('/')[2]}"


# -- Kubernetes and Helm ----------------------------------------------------------------------------
def kubernetes_operation(type_: str, effect: str, values: Mapping[str, Any], scope: Scope) -> Operation:
    """``k8s://CLUSTER/NS/KIND/NAME`` (a namespace's deletion with ``contents``), a create against its
    namespace (or the cluster), a Helm release against its namespace with ``contents``."""
    cluster = scope.cluster
    if cluster is None:
        raise Unnamed(scope.cluster_problem or "the cluster its provider talks to is unknown: pass --cluster NAME")
    on = f"cluster {cluster} ({scope.cluster_from})"
    if type_ == "helm_release":
        # what a release holds is in its namespace: decided by the strictest there (but a new one by the namespace)
        release_namespace = _text(values.get("namespace")) or "default"
        return Operation("terraform", k8s_target(cluster, "namespaces", release_namespace), effect,
                         contents=effect != CREATE,
                         note=f"release {_text(values.get('name'))} in namespace {release_namespace} of {on}")
    kind, name, namespace = kubernetes_object(type_, values)
    if kind is None or name is None:
        if namespace is None:
            raise Unnamed(f"{type_} names no object envlabel can read (kind and metadata.name)")
        return Operation("terraform", k8s_target(cluster, "namespaces", namespace), effect, contents=True,
                         note=f"{type_} in namespace {namespace} of {on}")
    if effect == CREATE:
        container = k8s_target(cluster, "namespaces", namespace) if namespace else f"k8s://{cluster}"
        return Operation("terraform", container, CREATE, note=f"{kind}/{name} created in {container}")
    return Operation("terraform", k8s_target(cluster, kind, name, namespace), effect,
                     contents=effect == DELETE and kind == "namespaces", note=f"{kind}/{name} on {on}")


def kubernetes_object(type_: str, values: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(plural kind, name, namespace) of a Kubernetes provider resource, a ``kubernetes_manifest`` or a
    ``kubectl_manifest``; the namespace is None for cluster-scoped kinds (``default`` when a namespaced one
    names none, as the provider does)."""
    manifest = values.get("manifest") if type_ == "kubernetes_manifest" else None
    if isinstance(manifest, Mapping):
        raw = manifest.get("metadata")
        metadata: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        kind = _plural(_text(manifest.get("kind")))
        name, namespace = _text(metadata.get("name")), _text(metadata.get("namespace"))
        # a custom kind without a namespace is cluster-scoped: kubernetes_manifest demands one otherwise
        return kind, name, (namespace if kind not in K8S_CLUSTER_SCOPED else None)
    if type_ == "kubectl_manifest":
        kind = _plural(_text(values.get("kind")))
        namespace = _text(values.get("namespace"))
        return kind, _text(values.get("name")), namespace if kind not in K8S_CLUSTER_SCOPED else None
    blocks = values.get("metadata")
    metadata = blocks[0] if isinstance(blocks, list) and blocks and isinstance(blocks[0], Mapping) else {}
    bare = _VERSION_SUFFIX.sub("", type_.removeprefix("kubernetes_"))
    kind = K8S_TYPES.get(bare) or _plural(_text(values.get("kind")))
    namespace = _text(metadata.get("namespace"))
    if kind in K8S_CLUSTER_SCOPED:
        namespace = None
    elif kind is not None:
        namespace = namespace or "default"
    return kind, _text(metadata.get("name")), namespace


def _plural(kind: str | None) -> str | None:
    """The plural resource name of a kind (``NetworkPolicy`` -> ``networkpolicies``)."""
    if not kind:
        return None
    lowered = kind.lower()
    if lowered in _K8S_KIND_PLURALS:
        return _K8S_KIND_PLURALS[lowered]
    if lowered.endswith("y") and lowered[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lowered[:-1] + "ies"
    return lowered + ("es" if lowered.endswith(("s", "x", "ch", "sh")) else "s")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
