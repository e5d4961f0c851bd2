"""The fake API server's validating admission: ``ValidatingWebhookConfiguration`` objects, called as
kube-apiserver calls them.

Before a create, update, patch, delete or connect (``pods/exec``, ``attach``, ``portforward``) is stored,
every webhook of every stored ``admissionregistration.k8s.io/v1`` ``ValidatingWebhookConfiguration`` whose
``rules`` (operations, apiGroups, apiVersions, resources with subresources, scope), ``namespaceSelector``
and ``objectSelector`` (``matchLabels`` and ``matchExpressions``) match is sent a real ``admission.k8s.io/v1``
``AdmissionReview`` by POST over HTTPS, verified against the webhook's ``caBundle``, within its
``timeoutSeconds``. A refusal is answered as kube-apiserver words it (``admission webhook "NAME" denied the
request: MESSAGE``); an unreachable or broken webhook fails the request under ``failurePolicy: Fail`` (the
default) and is skipped under ``Ignore``. A ``dryRun`` request is sent with ``dryRun: true``, only to
webhooks whose ``sideEffects`` are ``None`` or ``NoneOnDryRun``, and nothing is stored.

There is no cluster DNS here: a webhook's ``clientConfig.service`` is reached at the address a test gives in
``fake.services["NAMESPACE/NAME"]`` (``host:port``), and its certificate is verified for the name
kube-apiserver uses, ``NAME.NAMESPACE.svc``. Who is asking comes from the bearer token
(``fake.users[token]``, a ``userInfo``; any other token is the cluster admin), and kubectl's ``--as`` /
``--as-group`` impersonation headers replace it. ``matchConditions`` (CEL) are not evaluated: a webhook that
has them is refused when it is stored, so no test believes it was honoured.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import socket
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from envlabel.service.demo.fakes.kubernetes_state import ApiError, FakeKubernetes, Kind, Obj
from envlabel.service.demo.fakes.kubernetes_state import _json_patch as json_patch
from envlabel.service.demo.fakes.kubernetes_state import _merge_patch as merge_patch

__all__ = ["ADMIN", "GROUP", "Write", "admit", "check_configuration", "dry_run_answer", "is_dry_run", "user_info"]

#: the API group of webhook configurations; kube-apiserver never sends their own writes to a webhook (no lockout)
GROUP = "admissionregistration.k8s.io"
#: who a request is from when its token names nobody in ``fake.users``
ADMIN: Obj = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}
_OPERATIONS = {"create": "CREATE", "update": "UPDATE", "patch": "UPDATE", "delete": "DELETE", "connect": "CONNECT"}
_OPTIONS = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
_CONNECT_KINDS = {"exec": "PodExecOptions", "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions"}


def check_configuration(kind: Kind, body: Obj) -> None:
    """Refuse a webhook configuration the fake could not honour faithfully (422, as for an invalid object)."""
    if (kind.group, kind.resource) != (GROUP, "validatingwebhookconfigurations"):
        return
    for hook in body.get("webhooks") or []:
        name = hook.get("name", "?")
        if hook.get("matchConditions"):
            raise ApiError(422, "Invalid", f"webhook {name}: the fake API server does not evaluate matchConditions "
                           "(CEL); select requests with rules, namespaceSelector and objectSelector instead")
        if "v1" not in (hook.get("admissionReviewVersions") or []):
            raise ApiError(422, "Invalid", f"webhooks[{name}].admissionReviewVersions: must include v1")
        if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise ApiError(422, "Invalid", f"webhooks[{name}].sideEffects: Unsupported value: "
                           f"{hook.get('sideEffects')!r}: supported values: \"None\", \"NoneOnDryRun\"")


def user_info(fake: FakeKubernetes, headers: list[tuple[str, str]]) -> Obj:
    """The ``userInfo`` of a request: its token's user, or whom ``Impersonate-User`` names."""
    named = {k.lower(): v for k, v in headers}
    token = named.get("authorization", "").removeprefix("Bearer ").strip()
    user = copy.deepcopy(fake.users.get(token, ADMIN))
    impersonated = named.get("impersonate-user")
    if impersonated:
        groups = [v for k, v in headers if k.lower() == "impersonate-group"]
        user = {"username": impersonated, "groups": [*groups, "system:authenticated"]}
    return user


@dataclass(frozen=True, slots=True)
class Write:
    """One request that admission sees: the RBAC verb (or ``connect``), its target and body, who sent it."""

    verb: str
    kind: Kind
    namespace: str | None
    name: str | None
    body: Any
    query: Mapping[str, str]
    headers: list[tuple[str, str]]
    subresource: str | None = None


def is_dry_run(write: Write) -> bool:
    """``dryRun=All`` in the query, or in a delete's DeleteOptions body (where kubectl puts it)."""
    body = write.body
    in_body = write.verb == "delete" and isinstance(body, dict) and "All" in (body.get("dryRun") or [])
    return write.query.get("dryRun") == "All" or in_body


def admit(fake: FakeKubernetes, write: Write) -> Obj | None:
    """Call every matching webhook for one write; raise the refusal as an :class:`ApiError`.

    Returns the object the write would leave (the old one for a delete), which a ``dryRun`` answer shows."""
    old, new = _objects(fake, write)
    if write.kind.group == GROUP:
        if new is not None:
            check_configuration(write.kind, new)
        return new if new is not None else old
    dry_run = is_dry_run(write)
    request = _request(write, new, old, user_info(fake, write.headers), dry_run=dry_run)
    for configuration, hook in _webhooks(fake):
        if not _matches(fake, hook, request, write.kind, (old, new)):
            continue
        if dry_run and hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise ApiError(400, "BadRequest", f'admission webhook "{hook.get("name")}" does not support dry run')
        _call(fake, configuration, hook, request)
    return new if new is not None else old


def dry_run_answer(verb: str, kind: Kind, obj: Obj | None) -> Obj:
    """What the server answers to a ``dryRun=All`` write it did not store."""
    if verb == "delete" and obj is not None:
        details = {"name": obj["metadata"]["name"], "group": kind.group, "kind": kind.resource,
                   "uid": obj["metadata"].get("uid", "")}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
    return obj or {}


# -- what is sent ------------------------------------------------------------------------------------
def _objects(fake: FakeKubernetes, write: Write) -> tuple[Obj | None, Obj | None]:
    """(oldObject, object) as the webhook sees them; a missing target is the server's own 404 first."""
    verb, kind, namespace, name, body = write.verb, write.kind, write.namespace, write.name, write.body
    if verb == "connect":
        return None, body
    with fake.cond:
        old = copy.deepcopy(fake.find(kind, namespace, name)) if name is not None and verb != "create" else None
    if verb == "delete":
        return old, None
    if verb == "patch":
        assert old is not None
        new = json_patch(old, body) if isinstance(body, list) else merge_patch(old, body)
    else:
        new = copy.deepcopy(body) if isinstance(body, dict) else {}
    new.update(apiVersion=kind.api_version, kind=kind.kind)
    new.setdefault("metadata", {})
    if kind.namespaced:
        new["metadata"].setdefault("namespace", namespace or "default")
    return old, new


def _request(write: Write, new: Obj | None, old: Obj | None, user: Obj, *, dry_run: bool) -> Obj:
    kind, subresource, namespace = write.kind, write.subresource, write.namespace
    operation = _OPERATIONS[write.verb]
    name = write.name or (new or {}).get("metadata", {}).get("name", "")
    gvk = {"group": kind.group, "version": kind.version,
           "kind": _CONNECT_KINDS[subresource] if subresource else kind.kind}
    gvr = {"group": kind.group, "version": kind.version, "resource": kind.resource}
    request: Obj = {"uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk,
                    "requestResource": gvr, "name": name, "operation": operation, "userInfo": user,
                    "object": new, "oldObject": old, "dryRun": dry_run}
    if kind.namespaced:
        request["namespace"] = namespace or (new or old or {}).get("metadata", {}).get("namespace", "default")
    if subresource:
        request["subResource"] = request["requestSubResource"] = subresource
        request["object"] = {"kind": gvk["kind"], "apiVersion": "v1",
                             **{k: v for k, v in write.query.items() if k in ("container", "command", "stdin", "tty")}}
    elif operation in _OPTIONS:
        request["options"] = {"kind": _OPTIONS[operation], "apiVersion": "meta.k8s.io/v1",
                              **({"dryRun": ["All"]} if dry_run else {})}
    return request


# -- which webhooks ------------------------------------------------------------------------------------
def _webhooks(fake: FakeKubernetes) -> list[tuple[Obj, Obj]]:
    """(configuration, webhook) for every stored webhook, in configuration name order as the server sorts them."""
    with fake.cond:
        stored = copy.deepcopy(fake.objects.get((GROUP, "v1", "validatingwebhookconfigurations"), {}))
    return [(c, h) for _, c in sorted(stored.items()) for h in c.get("webhooks") or []]


def _listed(values: Any, value: str) -> bool:
    return "*" in (values or []) or value in (values or [])


def _resource_matches(patterns: Any, resource: str, subresource: str | None) -> bool:
    """``pods``, ``pods/exec``, ``pods/*``, ``*`` (no subresources), ``*/*``, ``*/exec``, as the server reads them."""
    for pattern in patterns or []:
        head, _, sub = str(pattern).partition("/")
        if head not in ("*", resource):
            continue
        if (not sub and subresource is None) or sub == "*" or (sub and sub == subresource):
            return True
    return False


def _rule_matches(rule: Obj, request: Obj, kind: Kind) -> bool:
    scope = rule.get("scope", "*")
    return (_listed(rule.get("operations"), request["operation"])
            and _listed(rule.get("apiGroups"), kind.group) and _listed(rule.get("apiVersions"), kind.version)
            and _resource_matches(rule.get("resources"), kind.resource, request.get("subResource"))
            and scope in ("*", "Namespaced" if kind.namespaced else "Cluster"))


def _selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist)."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        held = {"In": key in labels and labels[key] in values, "NotIn": key not in labels or labels[key] not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}
        if operator not in held:
            raise ApiError(500, "InternalError", f"the fake does not know the selector operator {operator!r}")
        if not held[operator]:
            return False
    return True


def _matches(fake: FakeKubernetes, hook: Obj, request: Obj, kind: Kind, objects: tuple[Obj | None, Obj | None]) -> bool:
    if not any(_rule_matches(rule, request, kind) for rule in hook.get("rules") or []):
        return False
    labels = [o["metadata"].get("labels") or {} for o in objects if o is not None and o.get("metadata")]
    if not request.get("subResource") and not any(_selector_matches(hook.get("objectSelector"), lab)
                                                  for lab in labels or [{}]):
        return False
    if (kind.group, kind.resource) == ("", "namespaces"):  # a namespace is matched by its own labels
        return any(_selector_matches(hook.get("namespaceSelector"), lab) for lab in labels or [{}])
    if not kind.namespaced:
        return True  # namespaceSelector does not apply to other cluster-scoped objects
    with fake.cond:
        namespace = fake.objects[("", "v1", "namespaces")].get(("", request["namespace"]))
        namespace_labels = dict((namespace or {}).get("metadata", {}).get("labels") or {})
    return _selector_matches(hook.get("namespaceSelector"), namespace_labels)


# -- the call ------------------------------------------------------------------------------------------
def _endpoint(fake: FakeKubernetes, client: Obj) -> tuple[str, int, str, str]:
    """(host, port, the name the certificate must hold, path) of a webhook's clientConfig."""
    if client.get("url"):
        url = urlsplit(str(client["url"]))
        if url.scheme != "https" or url.hostname is None:
            raise ValueError(f"webhook url {client['url']!r}: kube-apiserver calls webhooks over https only")
        return url.hostname, url.port or 443, url.hostname, url.path or "/"
    service = client.get("service") or {}
    key = f"{service.get('namespace')}/{service.get('name')}"
    address = fake.services.get(key)
    if address is None:
        raise ValueError(f'service "{key}" not found (give the fake its address in fake.services[{key!r}])')
    host, _, port = address.rpartition(":")
    return host, int(port), f"{service.get('name')}.{service.get('namespace')}.svc", service.get("path") or "/"


def _post(fake: FakeKubernetes, hook: Obj, review: Obj) -> Obj:
    client = hook.get("clientConfig") or {}
    host, port, server_name, path = _endpoint(fake, client)
    bundle = client.get("caBundle")
    context = ssl.create_default_context(cadata=base64.b64decode(bundle).decode() if bundle else None)
    timeout = float(hook.get("timeoutSeconds") or 10)
    raw = socket.create_connection((host, port), timeout=timeout)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.sock = context.wrap_socket(raw, server_hostname=server_name)
        connection.request("POST", path, json.dumps(review).encode(), {"Content-Type": "application/json",
                                                                     "Accept": "application/json"})
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise ValueError(f"the server responded with status {answer.status}: {data[:200]!r}")
        decoded = json.loads(data)
    finally:
        connection.close()
        raw.close()
    response = decoded.get("response") if isinstance(decoded, dict) else None
    if not isinstance(response, dict) or response.get("uid") != review["request"]["uid"]:
        raise ValueError("expected a v1 AdmissionReview response with the request's uid")
    return response


def _call(fake: FakeKubernetes, configuration: Obj, hook: Obj, request: Obj) -> None:
    name = str(hook.get("name"))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    try:
        response = _post(fake, hook, review)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts and TLS failures are OSErrors
        fake.admission_calls.append((configuration["metadata"]["name"], name, request, None))
        if hook.get("failurePolicy", "Fail") == "Ignore":
            return
        detail = "context deadline exceeded" if isinstance(exc, TimeoutError) else str(exc)
        raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                       f"failed to call webhook: {detail}") from None
    fake.admission_calls.append((configuration["metadata"]["name"], name, request, response))
    if response.get("allowed") is True:
        return
    status = response.get("status") or {}
    message = status.get("message") or status.get("reason")
    sent = status.get("code")
    code = sent if isinstance(sent, int) and sent >= 400 else 403
    error = ApiError(code, status.get("reason") or "Forbidden", f'admission webhook "{name}" denied the request'
                     + (f": {message}" if message else " without explanation"))
    raise error
