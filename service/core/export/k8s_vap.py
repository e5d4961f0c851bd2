"""``envlabel export k8s-vap``: a ValidatingAdmissionPolicy and its binding per cluster, for clusters where the
admission webhook is not wanted.

One file per cluster, ``k8s-vap/CLUSTER.yaml`` (``kubectl apply -f``), two ``admissionregistration.k8s.io/v1``
objects named :data:`NAME`:

- the **policy** matches DELETE of any namespaced object, DELETE of a Namespace and CREATE of
  ``pods/eviction`` (the vocabulary's delete class), plus UPDATE with ``include_modify``; its CEL validation
  refuses them with a message naming the namespace's environment. ``matchConditions`` skip the principals
  config ``admission`` exempts from the webhook (envlabel itself, the control plane's controllers, kubelets,
  the break-glass groups) and ``export.k8s_exempt_groups``, so the two layers admit the same people.
  ``failurePolicy: Fail``: a CEL error refuses rather than admits.
- the **binding** (``validationActions: [Deny]``) selects the protected namespaces by
  ``kubernetes.io/metadata.name``: ``In`` the namespaces envlabel labels with an exported environment (or
  ``unknown``, enforced as the strictest); when the cluster itself and every namespace in it are protected,
  ``NotIn`` the exempt ones instead, so a namespace created after the export is protected at once.
  kube-system, envlabel's own namespace and ``admission.exempt_namespaces`` are never selected (no lockout).

A cluster with no protected namespace gets no file. CONNECT (``pods/exec``...) is the webhook's alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from envlabel.service.core.admission import ALWAYS_EXEMPT_NAMESPACES, own_namespace
from envlabel.service.core.export import Artifact, ExportOptions
from envlabel.service.core.export.labeled import Labeled, iter_labeled
from envlabel.service.core.query import Query

KIND = "k8s-vap"
NAME = "envlabel-protect-environments"
API_VERSION = "admissionregistration.k8s.io/v1"
NAME_LABEL = "kubernetes.io/metadata.name"
MANAGED = {"app.kubernetes.io/managed-by": "envlabel"}
#: the characters RE2 gives a meaning (escaped in a pattern's literal part)
RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
#: CEL: an eviction (CREATE pods/eviction), which the vocabulary classes as a delete
EVICTION = '(request.operation == "CREATE" && has(request.subResource) && request.subResource == "eviction")'
#: CEL: the namespace a request acts in; a Namespace object's own request names it (and, from kube-apiserver,
#: carries it as its namespace too)
NAMESPACE = 'has(request.namespace) && request.namespace != "" ? request.namespace : request.name'
#: CEL: the refusal, with the namespace's environment
MESSAGE = (
    '"envlabel: namespace " + variables.namespace + " is labeled " + variables.environment + "; " + '
    'request.operation + " of " + request.resource.resource + " " + (has(request.name) ? request.name : "") + '
    f'" is refused by the ValidatingAdmissionPolicy {NAME}. Ask an approver of that environment, or have a '
    'break-glass principal do it; run envlabel get on the namespace for the evidence."')


def export(query: Query, options: ExportOptions) -> list[Artifact]:
    """One policy and binding per cluster that has a protected namespace (see the module docstring)."""
    config = query.config
    own = own_namespace(config)
    exempt_namespaces = sorted({*ALWAYS_EXEMPT_NAMESPACES, own, *config.admission.exempt_namespaces})
    settings = config.admission
    users = [p.replace("{namespace}", own) for p in settings.exempt_usernames]
    groups = [*settings.exempt_groups, *settings.break_glass_groups, *options.k8s_exempt_groups]
    clusters: dict[str, Labeled] = {}
    namespaces: dict[str, list[Labeled]] = {}
    for node in iter_labeled(query, "kubernetes", frozenset({"k8s:cluster", "k8s:namespaces"})):
        if node.kind == "k8s:cluster":
            clusters[node.id] = node
        elif node.parent is not None:
            namespaces.setdefault(node.parent, []).append(node)
    artifacts = []
    for cluster_id, members in sorted(namespaces.items()):
        cluster = clusters.get(cluster_id)
        name = cluster.name if cluster else cluster_id.removeprefix("k8s://")
        protected = [n for n in members if n.environment in options.environments and n.name not in exempt_namespaces]
        if not protected:
            continue
        whole = (cluster is not None and cluster.environment in options.environments
                 and all(n.environment in options.environments for n in members))
        selector = ({"key": NAME_LABEL, "operator": "NotIn", "values": exempt_namespaces} if whole else
                    {"key": NAME_LABEL, "operator": "In", "values": sorted(n.name for n in protected)})
        default = cluster.environment if whole and cluster else config.environments[0]
        documents = [policy(protected, default, options.include_modify, users, groups),
                     binding(selector)]
        content = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=100)
        artifacts.append(Artifact(f"{KIND}/{file_name(name)}.yaml", content,
                                  (cluster_id, *sorted(n.id for n in protected))))
    return artifacts


def file_name(cluster: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", cluster).strip(".-") or "cluster"


def cel(value: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's)."""
    return json.dumps(value)


def cel_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(cel(v) for v in values) + "]"


def pattern_regex(pattern: str) -> str:
    """An ``admission`` pattern (``*`` any run, ``?`` one character, the rest literal) as an RE2 regex."""
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else "\\" + c if c in RE2_SPECIAL else c
                         for c in pattern) + "$"


def principal_match(field: str, patterns: Sequence[str]) -> str:
    """CEL true when ``field`` (a string variable) is one of ``patterns``."""
    exact = sorted({p for p in patterns if "*" not in p and "?" not in p})
    wild = sorted({p for p in patterns if "*" in p or "?" in p})
    parts = ([f"{field} in {cel_list(exact)}"] if exact else []) + [
        f"{field}.matches({cel(pattern_regex(p))})" for p in wild]
    return " || ".join(parts) or "false"


def exemption_condition(users: Sequence[str], groups: Sequence[str]) -> str:
    """CEL true when the request's principal is *not* exempt (a matchCondition: false skips the policy)."""
    user = principal_match("request.userInfo.username", users)
    group = principal_match("g", groups)
    return (f"!((has(request.userInfo.username) && ({user})) || "
            f"(has(request.userInfo.groups) && request.userInfo.groups.exists(g, {group})))")


def denied_operations(include_modify: bool) -> str:
    """CEL true for the operations the policy refuses: the delete class, and UPDATE when modify is too."""
    denied = ['request.operation == "DELETE"', EVICTION]
    if include_modify:
        denied.append('request.operation == "UPDATE"')
    return " || ".join(denied)


def policy(protected: Sequence[Labeled], default: str, include_modify: bool, users: Sequence[str],
           groups: Sequence[str]) -> dict[str, Any]:
    operations = ["DELETE", "UPDATE"] if include_modify else ["DELETE"]
    # namespaces selected by a NotIn selector (created after the export) are enforced as ``default``
    lookup = ("variables.namespace in variables.environments ? variables.environments[variables.namespace] : "
              + cel(default))
    environments = ", ".join(f"{cel(n.name)}: {cel(n.describe())}" for n in sorted(protected, key=lambda n: n.name))
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NAME, "labels": dict(MANAGED)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                # a list of its own each, or the YAML would share it by an alias
                {"apiGroups": ["*"], "apiVersions": ["*"], "operations": list(operations), "resources": ["*"],
                 "scope": "Namespaced"},
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": list(operations),
                 "resources": ["namespaces"], "scope": "Cluster"},
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods/eviction"],
                 "scope": "Namespaced"},
            ]},
            "matchConditions": [{"name": "not-exempt", "expression": exemption_condition(users, groups)}],
            "variables": [
                {"name": "namespace", "expression": NAMESPACE},
                {"name": "environments", "expression": "{" + environments + "}"},
                {"name": "environment", "expression": lookup},
            ],
            "validations": [{
                "expression": f"!({denied_operations(include_modify)})",
                "messageExpression": MESSAGE,
                "message": f"envlabel: this namespace is protected by {NAME}; ask an approver or a break-glass "
                           "principal",
                "reason": "Forbidden",
            }],
        },
    }


def binding(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NAME, "labels": dict(MANAGED)},
        "spec": {
            "policyName": NAME,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchExpressions": [selector]}},
        },
    }
