"""The Kubernetes admission webhook as a use case: an ``admission.k8s.io/v1`` AdmissionReview in, one out.

kube-apiserver calls it (``POST /v1/admission/kubernetes/{CLUSTER}``) for the requests a
``ValidatingWebhookConfiguration`` matches; every one is decided by the same :func:`check` as everything else:

- the target is the request's object: ``k8s://CLUSTER/NAMESPACE/RESOURCE/NAME`` from ``request.resource.resource``
  (the plural), ``namespace`` and ``name``; a CREATE of an object envlabel never saw is decided by the strictest
  label inside its namespace (as ``kubectl apply`` is decided by the command reader), and never less strict
  than the object's own environment labels; a CREATE with no name yet (``generateName``) is decided on the
  namespace;
- the action: CREATE ``create``, UPDATE ``update``, DELETE ``delete``, CONNECT ``create`` (as the guard reads
  ``pods/exec``, ``pods/attach``, ``pods/portforward``), with the resource and subresource
  (``create pods/exec``, ``create pods/eviction``), so the vocabulary classes them;
- the principal is ``userInfo``: its ``username`` and ``groups`` are authoritative (they are what kube-apiserver
  authenticated), so their grants apply; the check goes through the
  :class:`~envlabel.service.core.authority.Authority` with interface ``admission`` (the decision log records it).

``allow`` admits; ``require_approval`` and ``deny`` answer ``allowed: false`` with a 403 status whose message
cites the environment, the evidence and how to go ahead. In audit mode (config ``mode: audit``) nothing is refused:
the request is admitted with a warning saying what enforcement would have done, and the log records it. Always
admitted, so envlabel can never lock a cluster out: the principals and groups of config ``admission`` (envlabel
itself, the control plane's controllers, kubelets, the break-glass groups) and every object in kube-system and
envlabel's own namespace (not checked, so not in the decision log). A ``dryRun`` request is decided as any other,
but its answer says so, the decision log marks it a dry run and no approval is spent on it; refusals are also
logged at INFO (dry runs at DEBUG). A malformed review raises :class:`MalformedReview` (the API answers 400;
kube-apiserver then applies the webhook's ``failurePolicy``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from envlabel.config import Config
from envlabel.errors import EnvlabelError, TargetError
from envlabel.records import CheckRecord
from envlabel.service.core.authority import ANONYMOUS, Authority, Caller
from envlabel.service.core.check import check, never_seen, redecide
from envlabel.service.core.query import Query
from envlabel.targets import k8s_target

log = logging.getLogger("envlabel.admission")
API_VERSION = "admission.k8s.io/v1"
OPERATIONS = {"CREATE": "create", "UPDATE": "update", "DELETE": "delete", "CONNECT": "create"}
#: always admitted whatever the config says: blocking them can lock a cluster out of itself
ALWAYS_EXEMPT_NAMESPACES = ("kube-system",)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "envlabel"


class MalformedReview(EnvlabelError, ValueError):
    """The body is not an ``admission.k8s.io/v1`` AdmissionReview request envlabel can decide."""


@dataclass(frozen=True)
class Request:
    """The parts of an AdmissionRequest the decision reads."""

    uid: str
    operation: str
    resource: str
    group: str
    subresource: str
    namespace: str
    name: str
    username: str
    groups: tuple[str, ...]
    dry_run: bool
    labels: Mapping[str, str]
    #: the operation's options (a DELETE's DeleteOptions: ``propagationPolicy``), which recovery reads
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def caller(self) -> Caller:
        """The check's caller: kube-apiserver's authenticated user and groups."""
        return Caller(principal=self.username or ANONYMOUS, groups=self.groups, interface="admission",
                      dry_run=self.dry_run)

    @property
    def principal(self) -> str:
        groups = f" (groups {', '.join(self.groups)})" if self.groups else ""
        return f"{self.username or 'an anonymous user'}{groups}"

    @property
    def what(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        where = f" in namespace {self.namespace}" if self.namespace and self.resource != "namespaces" else ""
        return f"{self.operation} of {self.resource}{sub} {self.name or '(name not yet generated)'}{where}"


def review(authority: Authority | Query, body: Any, cluster: str | None) -> dict[str, Any]:
    """The AdmissionReview answering ``body`` for the cluster ``cluster`` (None: the one kubernetes source's).

    Raises :class:`MalformedReview` when ``body`` is
    not a v1 AdmissionReview request."""
    authority = authority if isinstance(authority, Authority) else Authority(authority)
    request = parse_review(body)
    allowed, message, decision = decide(authority, request, cluster)
    warnings: list[str] = []
    if not allowed and audit_mode(authority):
        warnings.append(f"envlabel audit mode: would have refused: {message}")
        allowed = True
    response: dict[str, Any] = {"uid": request.uid, "allowed": allowed,
                                "auditAnnotations": {"decision": decision}}
    if audit_mode(authority):
        response["auditAnnotations"]["mode"] = "audit"
    if not allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    if request.dry_run:
        warnings.append(f"envlabel: dry run decided {decision}; not counted as an action")
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def audit_mode(authority: Authority) -> bool:
    """Shadow mode for admission: config ``mode: audit`` (kube-apiserver sends no ENVLABEL_MODE)."""
    return bool(authority.config.mode == "audit")


def decide(authority: Authority, request: Request, cluster: str | None) -> tuple[bool, str, str]:
    """(allowed, message, decision word) for one request, as enforcement would decide it; logs it (a dry run at
    DEBUG, never counted)."""
    query = authority.query
    config = query.config
    level = logging.DEBUG if request.dry_run else logging.INFO
    dry = "dry run, not counted: " if request.dry_run else ""
    exempt = exemption(config, request)
    if exempt:
        log.log(logging.INFO if "break-glass" in exempt and not request.dry_run else logging.DEBUG,
                "%sadmitted %s by %s: %s", dry, request.what, request.principal, exempt)
        return True, "", "exempt"
    resolved = cluster_of(config, cluster)
    if isinstance(resolved, tuple):  # no cluster envlabel knows: refuse (fail closed), saying how to fix it
        message = (f"envlabel refused {request.what} by {request.principal}: {resolved[0]}. Exempt principals "
                   "(config admission) still pass.")
        log.log(level, "%s%s", dry, message)
        return False, message, "deny"
    try:
        answer = authority.finish(request.caller, check_request(query, request, resolved))
    except TargetError as exc:
        message = (f"envlabel refused {request.what} by {request.principal}: its target cannot be read ({exc}); "
                   "decided as a deny (fail closed)")
        log.log(level, "%s%s", dry, message)
        return False, message, "deny"
    if answer["decision"] == "allow":
        log.debug("%sadmitted %s by %s: %s", dry, request.what, request.principal, "; ".join(answer["reasons"]))
        return True, "", "allow"
    message = refusal(request, answer)
    log.log(level, "%s%s", dry, message)
    return False, message, answer["decision"]


def check_request(query: Query, request: Request, cluster: str) -> CheckRecord:
    """The check of the request's action on its target (CREATE of a never-seen object: on its namespace)."""
    action = action_of(request)
    container = (k8s_target(cluster, "namespaces", request.namespace)
                 if request.namespace and request.resource != "namespaces" else f"k8s://{cluster}")
    if not request.name:  # generateName: the object has no name yet, only where it is created
        return check(query, container, action)
    if request.resource == "namespaces":
        target = k8s_target(cluster, "namespaces", request.name)
    else:
        target = k8s_target(cluster, request.resource, request.name, request.namespace or None)
    answer = check(query, target, action, parameters=request.options or None)
    if request.operation != "CREATE" or not never_seen(answer["label"]) or container == target:
        return answer
    answer = check(query, container, action, contents=True)
    notes = [f"{target} was never seen by envlabel; decided by the strictest label inside {container}"]
    own = strictest(query, request.labels)
    environment = answer["environment"]
    if own is not None and query.config.environments.index(own) < query.config.environments.index(environment):
        notes.append(f"its own labels say {own}; decided as {own}")
        environment = own
    return redecide(query.config, answer, environment, notes)


def strictest(query: Query, labels: Mapping[str, str]) -> str | None:
    """The strictest environment the object's own environment labels name, or None when none does."""
    found = [match.environment for _, _, match in query.taxonomy.environment_tags(dict(labels))
             if match.environment is not None]
    order = query.config.environments
    return min(found, key=order.index) if found else None


def action_of(request: Request) -> str:
    """The check's action: the verb with the resource (``RESOURCE.GROUP`` for other groups) and subresource."""
    resource = request.resource if request.group in ("", "core") else f"{request.resource}.{request.group}"
    sub = f"/{request.subresource}" if request.subresource else ""
    return f"{OPERATIONS[request.operation]} {resource}{sub}"


def refusal(request: Request, answer: CheckRecord) -> str:
    """The ``status.message`` kube-apiserver shows the caller: what, why (environment and evidence), what to do."""
    label = answer["label"]
    evidence = "; ".join(f"{e['signal']} {e['environment']} from {e['detail']}" for e in label.get("evidence", []))
    cited = f" (evidence: {evidence})" if evidence else ""
    if answer["decision"] == "require_approval" and request.dry_run:
        who = ", ".join(answer.get("approvers", [])) or "a person who may approve it"
        how = ("This was a dry run, so no approval request was opened: send the request without dry run to open "
               f"one (the refusal then names it; {who} can approve it), and once it is approved send it again.")
    elif answer["decision"] == "require_approval":
        approval = answer.get("approval")
        which = f"approval {approval['id']}" if approval else "the approval"
        user = request.username or "the same user"
        how = (f"To go ahead, have {which} approved, then send the same request again as {user}: it is "
               "admitted once, and a later one needs a new approval.")
    else:
        how = ("Policy denies this here. If the environment is wrong, fix the label or have a person set an "
               f"override (envlabel override set {answer['target']} ENV --reason ... --by ...); in an emergency a "
               "break-glass principal (config admission.break_glass_groups) can do it.")
    return (f"envlabel refused {request.what} by {request.principal}: {answer['action']} "
            f"({answer['action_class']}) on {answer['target']} is {answer['decision']} as {answer['environment']}"
            f"{cited}. Why: {'; '.join(answer['reasons'])}. {how}")


# -- exemptions ------------------------------------------------------------------------------------
def own_namespace(config: Config) -> str:
    """envlabel's own namespace: configured, else the pod's service-account namespace, else ``envlabel``."""
    if config.admission.namespace:
        return config.admission.namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def exemption(config: Config, request: Request) -> str:
    """Why the request is admitted without a check, or "" when it is checked."""
    settings = config.admission
    namespace = own_namespace(config)
    # objects inside these namespaces pass (no lockout); a Namespace object itself is decided by the check
    exempt_namespaces = {*ALWAYS_EXEMPT_NAMESPACES, namespace, *settings.exempt_namespaces}
    if request.namespace in exempt_namespaces and request.resource != "namespaces":
        return f"namespace {request.namespace} is never blocked"
    users = [pattern.replace("{namespace}", namespace) for pattern in settings.exempt_usernames]
    if (user := matching(request.username, users)) is not None:
        return f"user {request.username} is exempt (admission.exempt_usernames {user})"
    for group in request.groups:
        if (pattern := matching(group, settings.break_glass_groups)) is not None:
            return f"break-glass group {group} (admission.break_glass_groups {pattern})"
        if (pattern := matching(group, settings.exempt_groups)) is not None:
            return f"group {group} is exempt (admission.exempt_groups {pattern})"
    return ""


def matching(value: str, patterns: Sequence[str]) -> str | None:
    """The first pattern (``*`` wildcards) that ``value`` matches exactly, or None."""
    return next((p for p in patterns if value and fnmatchcase(value, p)), None)


def cluster_of(config: Config, cluster: str | None) -> str | tuple[str]:
    """The CLUSTER of the targets, or (why not,) when the path names no kubernetes source envlabel has."""
    clusters = [s.cluster or s.name for s in config.sources if s.type == "kubernetes"]
    if cluster is None:
        if len(clusters) == 1:
            return clusters[0]
        known = f"configured: {', '.join(clusters)}" if clusters else "none is configured"
        return (f"the webhook URL names no cluster and {len(clusters)} kubernetes sources are configured ({known}); "
                "use /v1/admission/kubernetes/CLUSTER in the ValidatingWebhookConfiguration",)
    if cluster not in clusters:
        known = ", ".join(clusters) or "none"
        return (f"cluster {cluster!r} in the webhook URL is not the cluster of any kubernetes source (configured: "
                f"{known}); fix the URL or add a kubernetes source for it",)
    return cluster


# -- parsing ---------------------------------------------------------------------------------------
def parse_review(body: Any) -> Request:
    """The request of an AdmissionReview; raises :class:`MalformedReview` saying what is wrong."""
    if not isinstance(body, dict):
        raise MalformedReview("the body is not a JSON object: send an admission.k8s.io/v1 AdmissionReview")
    if body.get("apiVersion") != API_VERSION or body.get("kind") != "AdmissionReview":
        raise MalformedReview(f"apiVersion {body.get('apiVersion')!r} kind {body.get('kind')!r}: only "
                              f"{API_VERSION} AdmissionReview is accepted (set admissionReviewVersions: [v1])")
    request = body.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("request is missing: an AdmissionReview must carry the request to decide")
    operation = text(request, "operation")
    if operation not in OPERATIONS:
        raise MalformedReview(f"request.operation {operation!r} is not one of {', '.join(OPERATIONS)}")
    resource = request.get("resource")
    if not isinstance(resource, dict) or not text(resource, "resource"):
        raise MalformedReview("request.resource.resource is missing: the plural resource name is needed")
    user = request.get("userInfo") or {}
    if not isinstance(user, dict):
        raise MalformedReview("request.userInfo is not an object")
    groups = user.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise MalformedReview("request.userInfo.groups is not a list of strings")
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise MalformedReview("request.dryRun is not a boolean")
    uid = text(request, "uid")
    if not uid:
        raise MalformedReview("request.uid is missing: the answer must name the request it answers")
    return Request(uid=uid, operation=operation, resource=text(resource, "resource"), group=text(resource, "group"),
                   subresource=text(request, "subResource"), namespace=text(request, "namespace"),
                   name=text(request, "name"), username=text(user, "username"), groups=tuple(groups),
                   dry_run=dry_run, labels=object_labels(request, operation),
                   options=options if isinstance(options := request.get("options"), dict) else {})


def text(mapping: Mapping[str, Any], key: str) -> str:
    """A string field ("" when absent); raises :class:`MalformedReview` when it is there but not a string."""
    value = mapping.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReview(f"{key} is {type(value).__name__}, not a string")
    return value


def object_labels(request: Mapping[str, Any], operation: str) -> dict[str, str]:
    """The labels of the object the request creates (CONNECT options and DELETE carry none that matter)."""
    obj = request.get("object") if operation == "CREATE" else None
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items()}
