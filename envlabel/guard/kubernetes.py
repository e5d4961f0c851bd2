"""Guard the official Kubernetes Python client: every mutating call is checked with envlabel first.

    from kubernetes import client, config
    from envlabel.guard.kubernetes import protect

    config.load_kube_config(context="prod-eu")
    api = client.ApiClient()
    protect(api, cluster="prod-eu")                # the CLUSTER of envlabel's k8s:// targets
    client.AppsV1Api(api).delete_namespaced_deployment("api", "payments")  # ActionDenied in production

Every generated API class and the dynamic client send requests through
``ApiClient.call_api(method, url, ...)``; the guard wraps that method on the
instance given (as ``kubernetes.stream`` itself does). The verb comes from the
HTTP method (DELETE -> delete, or deletecollection on a collection; PUT ->
update; PATCH -> patch; POST -> create; GET/HEAD -> not checked) and the
target from the path:

    /api/v1/namespaces/NS/KIND/NAME[/SUB]            -> k8s://CLUSTER/NS/KIND/NAME
    /apis/GROUP/VERSION/namespaces/NS/KIND/NAME      -> k8s://CLUSTER/NS/KIND/NAME
    /api/v1/KIND/NAME (cluster-scoped)               -> k8s://CLUSTER/KIND/NAME
    /api/v1/namespaces/NS                            -> k8s://CLUSTER/namespaces/NS
    a collection (create, deletecollection)          -> its namespace, or the cluster

Creating names something that does not exist yet, so its container is the
target (a never-seen target would be decided as production). Review APIs
(authorization/authentication ``*reviews``) only ask questions and are not
checked. ``kubernetes.stream`` (exec, attach) swaps ``call_api`` for a
websocket while it runs and is not guarded.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from envlabel.client import Client
from envlabel.guard import enforce
from envlabel.targets import k8s_target

log = logging.getLogger("envlabel.guard.kubernetes")

VERBS = {"DELETE": "delete", "PUT": "update", "PATCH": "patch", "POST": "create"}
#: API groups whose POSTs are questions (SubjectAccessReview, TokenReview), not changes
QUESTION_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


def protect(api_client: Any = None, *, cluster: str, client: Client | None = None) -> Client:
    """Guard ``api_client`` (default: the client's default ``ApiClient``), whose objects live in envlabel's
    cluster ``cluster``. Protecting again replaces the previous guard. Returns the envlabel client."""
    if not cluster:
        raise ValueError("protect() needs cluster=: the CLUSTER part of envlabel's k8s:// targets "
                         "(the kubernetes source's `cluster`, else its name)")
    if api_client is None:
        from kubernetes.client import ApiClient

        api_client = ApiClient.get_default()  # type: ignore[no-untyped-call]
    envlabel = client or Client()
    unguarded = getattr(api_client, "_envlabel_unguarded_call_api", None) or api_client.call_api
    prefix = urlsplit(api_client.configuration.host).path.rstrip("/")

    def call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        path = urlsplit(url).path
        found = target_of(cluster, method, path.removeprefix(prefix) if prefix else path)
        if found is not None:
            target, verb = found
            log.debug("checking %s on %s", verb, target)
            enforce(envlabel, [target], verb)
        return unguarded(method, url, *args, **kwargs)

    api_client._envlabel_unguarded_call_api = unguarded
    api_client.call_api = call_api
    return envlabel


def target_of(cluster: str, method: str, path: str) -> tuple[str, str] | None:
    """(target, verb) of a request, or None when it cannot change anything.

    >>> target_of("prod", "DELETE", "/apis/apps/v1/namespaces/payments/deployments/api")
    ('k8s://prod/payments/deployments/api', 'delete')
    >>> target_of("prod", "GET", "/api/v1/namespaces/payments/pods") is None
    True
    """
    verb = VERBS.get(method.upper())
    if verb is None:
        return None
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:  # not a resource path: nothing more precise than the cluster (fail closed)
        return f"k8s://{cluster}", verb
    if group in QUESTION_GROUPS and verb == "create":
        return None
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 2:
        if len(rest) == 2 or rest[2] in _NAMESPACE_SUBRESOURCES:  # the namespace object itself
            return k8s_target(cluster, "namespaces", rest[1]), verb
        namespace, rest = rest[1], rest[2:]
    container = k8s_target(cluster, "namespaces", namespace) if namespace else f"k8s://{cluster}"
    if len(rest) < 2:  # a collection: creating in it, or deleting all of it
        return container, "deletecollection" if verb == "delete" else verb
    # the plural resource is the kind of envlabel's ids, custom resources included (KIND.GROUP is an alias)
    return k8s_target(cluster, rest[0], rest[1], namespace), verb
