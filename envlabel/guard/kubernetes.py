"""Guard the official Kubernetes Python client: every mutating call is checked with envlabel first.

    from kubernetes import client, config
    from envlabel.guard.kubernetes import protect

    config.load_kube_config(context="prod-eu")
    protect(cluster="prod-eu")                     # the CLUSTER of envlabel's k8s:// targets
    client.AppsV1Api().delete_namespaced_deployment("api", "payments")  # ActionDenied in production

What is guarded:

- ``protect(api_client, cluster=...)``: that ``ApiClient`` instance.
- ``protect(cluster=...)`` (no ``ApiClient``): every ``ApiClient`` built afterwards with the default
  configuration (``ApiClient()``, and so ``client.CoreV1Api()``, ``DynamicClient(ApiClient())``), plus the
  client registered with ``ApiClient.set_default`` if there is one. It wraps ``ApiClient.__init__`` on the
  class, and the wrapper guards only instances built without a configuration: a client built from an explicit
  ``Configuration`` (``config.new_client_from_config(context=...)``) may talk to another cluster, whose
  targets this ``cluster`` would misname, so it is left alone (protect it with its own ``cluster``). Clients
  built before the first such call are not reached: call ``protect()`` first, before building API objects.
  Calling it again replaces the guard of every default client, those already built included.

Not covered: ``kubernetes.aio`` and other client libraries, and code that replaces ``api_client.rest_client``
after ``protect()`` or sends with urllib3 itself (the guard hooks the official client's paths; it is not a
sandbox against the agent's own process).

How a guarded ``ApiClient`` is checked (instance attributes only; protecting again replaces the guard):

- Every HTTP request passes ``api_client.rest_client.request(method, url, ...)``: the generated API classes
  (via ``call_api``), the dynamic client, and code that calls the REST client itself. The guard wraps that
  method on the instance's ``RESTClientObject``, the one choke point.
- ``kubernetes.stream`` (exec, attach, port-forward) swaps ``api_client.call_api`` for a websocket while it
  runs, so those requests never reach the REST client. They are checked where they are built, in
  ``api_client.param_serialize``, before the websocket opens: always for the connect subresources (exec,
  attach, portforward), and for every request while ``call_api`` is not the client's own.

The verb comes from the HTTP method (DELETE -> delete, or deletecollection on a collection; PUT -> update;
PATCH -> patch; POST -> create; GET/HEAD/OPTIONS -> not checked) and the target from the path, decoded and
with dot segments resolved as the API server resolves them:

    /api/v1/namespaces/NS/KIND/NAME[/SUB]            -> k8s://CLUSTER/NS/KIND/NAME
    /apis/GROUP/VERSION/namespaces/NS/KIND/NAME      -> k8s://CLUSTER/NS/KIND/NAME
    /api/v1/KIND/NAME (cluster-scoped)               -> k8s://CLUSTER/KIND/NAME
    /api/v1/namespaces/NS                            -> k8s://CLUSTER/namespaces/NS
    a collection (create, deletecollection)          -> its namespace, or the cluster
    /api/v1/namespaces/NS/pods/NAME/exec (any method) -> k8s://CLUSTER/NS/pods/NAME, ``create pods/exec``
                                                        (``create pods/attach``, ``create pods/portforward``)

Creating names something that does not exist yet, so its container is the target (a never-seen target would
be decided as production). Review APIs (authorization/authentication ``*reviews``) only ask questions and are
not checked. A connect subresource is a shell, a console or the ports of a pod, whatever the method
(``kubernetes.stream`` sends GET), so it is checked as creating that subresource, as Kubernetes authorizes
it. Pods are not recorded by default: add ``pods`` to the kubernetes source's ``resources`` so exec in a
sandbox namespace is allowed; a never-seen pod is decided as production.
"""

from __future__ import annotations

import functools
import logging
import posixpath
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from envlabel.client import Client
from envlabel.guard import enforce
from envlabel.parameters import jsonable
from envlabel.targets import k8s_target

log = logging.getLogger("envlabel.guard.kubernetes")

VERBS = {"DELETE": "delete", "PUT": "update", "PATCH": "patch", "POST": "create"}
#: API groups whose POSTs are questions (SubjectAccessReview, TokenReview), not changes
QUESTION_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})
#: pod subresources that open a stream into the pod; checked as ``create pods/SUB`` whatever the method
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


class _Guard:
    """One cluster's checks: the CLUSTER of envlabel's targets, the client that asks envlabel, and how long to
    wait for an approval."""

    def __init__(self, cluster: str, envlabel: Client, wait: float | None = None) -> None:
        self.cluster, self.envlabel, self.wait = cluster, envlabel, wait

    def check(self, method: str, url: str, host: str, body: Any = None) -> None:
        """Raise unless envlabel allows ``method`` on ``url`` (a request to the API server at ``host``) with
        ``body``; the query and the body are the parameters an approval is bound to."""
        found = target_of(self.cluster, method, api_path(url, host))
        if found is not None:
            target, action = found
            log.debug("checking %s on %s", action, target)
            enforce(self.envlabel, [target], action, parameters=request_parameters(url, body), wait=self.wait)


def request_parameters(url: str, body: Any) -> dict[str, Any]:
    """The parameters of an API request, JSON-able: its query (``dryRun``, ``propagationPolicy``...) and body."""
    parameters: dict[str, Any] = {"query": sorted(parse_qsl(urlsplit(url).query, keep_blank_values=True))}
    if body is not None:
        parameters["body"] = jsonable(body)
    return parameters


class _GuardedRequest:
    """``RESTClientObject.request`` of one REST client, checked first: every HTTP request passes here."""

    def __init__(self, guard: _Guard, unguarded: Any, configuration: Any) -> None:
        self.guard, self.unguarded, self.configuration = guard, unguarded, configuration

    def __call__(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # request(method, url, headers=None, body=None, post_params=None, _request_timeout=None)
        body = kwargs.get("body", args[1] if len(args) > 1 else None)
        self.guard.check(method, url, self.configuration.host, body)
        return self.unguarded(method, url, *args, **kwargs)


class _GuardedSerialize:
    """``ApiClient.param_serialize`` of one client: checks the requests that will leave by websocket."""

    def __init__(self, guard: _Guard, unguarded: Any, api_client: Any) -> None:
        self.guard, self.unguarded, self.api_client = guard, unguarded, api_client

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.unguarded(*args, **kwargs)
        method, url = request[0], request[1]
        body = request[3] if len(request) > 3 else None  # (method, url, headers, body, post_params)
        host = self.api_client.configuration.host
        # the REST client checks everything else; a connect path is checked here too because kubernetes.stream
        # may swap the transport between building the request and sending it (another thread's stream)
        if _transport_swapped(self.api_client) or _is_connect(api_path(url, host)):
            self.guard.check(method, url, host, body)
        return request


def protect(api_client: Any = None, *, cluster: str, client: Client | None = None,
            wait: float | None = None) -> Client:
    """Guard ``api_client``, whose objects live in envlabel's cluster ``cluster``; without one, every
    ``ApiClient`` built afterwards with the default configuration (and the registered default client).
    Protecting again replaces the previous guard. Returns the envlabel client. ``wait``: seconds to wait for
    a person to decide an approval request (the approved request then goes through, once)."""
    if not cluster:
        raise ValueError("protect() needs cluster=: the CLUSTER part of envlabel's k8s:// targets "
                         "(the kubernetes source's `cluster`, else its name)")
    guard = _Guard(cluster, client or Client(interface="guard"), wait)
    if api_client is None:
        _guard_default_clients(guard)
    else:
        _guard_api_client(api_client, guard)
    return guard.envlabel


def _guard_api_client(api_client: Any, guard: _Guard) -> None:
    """Install ``guard`` on one ``ApiClient``: its REST client and its request building."""
    rest = api_client.rest_client
    if isinstance(rest.request, _GuardedRequest):
        rest.request.guard = guard
    else:
        rest.request = _GuardedRequest(guard, rest.request, rest.configuration)
    if isinstance(api_client.param_serialize, _GuardedSerialize):
        api_client.param_serialize.guard = guard
    else:
        api_client.param_serialize = _GuardedSerialize(guard, api_client.param_serialize, api_client)


def _guard_default_clients(guard: _Guard) -> None:
    """Guard every ``ApiClient`` built from now on without a configuration, and the registered default."""
    from kubernetes.client import ApiClient

    # one guard object shared by every default client: protecting again updates it in place, so the clients
    # already built follow too, and the class is wrapped once
    shared = getattr(ApiClient, "_envlabel_default_guard", None)
    if isinstance(shared, _Guard):
        shared.cluster, shared.envlabel, shared.wait = guard.cluster, guard.envlabel, guard.wait
        guard = shared
    else:
        setattr(ApiClient, "_envlabel_default_guard", guard)  # noqa: B010 - our mark on a class we do not own
    if not getattr(ApiClient.__init__, "_envlabel_guarded", False):
        unguarded_init = ApiClient.__init__

        @functools.wraps(unguarded_init)
        def __init__(self: Any, configuration: Any = None, *args: Any, **kwargs: Any) -> None:
            unguarded_init(self, configuration, *args, **kwargs)
            default_guard = getattr(ApiClient, "_envlabel_default_guard", None)
            if configuration is None and default_guard is not None:
                _guard_api_client(self, default_guard)

        __init__._envlabel_guarded = True  # type: ignore[attr-defined]
        setattr(ApiClient, "__init__", __init__)  # noqa: B010 - mypy refuses assigning to a method
    registered = getattr(ApiClient, "_default", None)  # what API classes built without a client use
    if registered is not None:
        _guard_api_client(registered, guard)


def api_path(url: str, host: str) -> str:
    """The API path of ``url``, as the API server reads it: host prefix removed, decoded, dot segments resolved.

    >>> api_path("https://k8s.example/base/api/v1/namespaces/a/../b/%73ecrets/x?watch=1", "https://k8s.example/base")
    '/api/v1/namespaces/b/secrets/x'
    """
    prefix = urlsplit(host).path.rstrip("/")
    path = urlsplit(url).path
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix):]
    return posixpath.normpath("/" + unquote(path).lstrip("/"))  # normpath keeps a leading //


def target_of(cluster: str, method: str, path: str) -> tuple[str, str] | None:
    """(target, action) of a request, or None when it cannot change anything.

    >>> target_of("prod", "DELETE", "/apis/apps/v1/namespaces/payments/deployments/api")
    ('k8s://prod/payments/deployments/api', 'delete')
    >>> target_of("prod", "GET", "/api/v1/namespaces/payments/pods/api-0/exec")
    ('k8s://prod/payments/pods/api-0', 'create pods/exec')
    >>> target_of("prod", "GET", "/api/v1/namespaces/payments/pods") is None
    True
    """
    verb = VERBS.get(method.upper())
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:  # not a resource path: nothing more precise than the cluster (fail closed)
        return (f"k8s://{cluster}", verb) if verb else None
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 2:
        if len(rest) == 2 or rest[2] in _NAMESPACE_SUBRESOURCES:  # the namespace object itself
            return (k8s_target(cluster, "namespaces", rest[1]), verb) if verb else None
        namespace, rest = rest[1], rest[2:]
    if namespace and group == "" and _is_connect_rest(rest):
        return k8s_target(cluster, "pods", rest[1], namespace), f"create pods/{rest[2]}"
    if verb is None or (group in QUESTION_GROUPS and verb == "create"):
        return None
    container = k8s_target(cluster, "namespaces", namespace) if namespace else f"k8s://{cluster}"
    if len(rest) < 2:  # a collection: creating in it, or deleting all of it
        return container, "deletecollection" if verb == "delete" else verb
    # the plural resource is the kind of envlabel's ids, custom resources included (KIND.GROUP is an alias)
    return k8s_target(cluster, rest[0], rest[1], namespace), verb


def _is_connect_rest(rest: list[str]) -> bool:
    return len(rest) >= 3 and rest[0] == "pods" and rest[2] in CONNECT_SUBRESOURCES


def _is_connect(path: str) -> bool:
    """True for a pod's exec, attach or portforward path (``/api/v1/namespaces/NS/pods/NAME/exec``)."""
    parts = [p for p in path.split("/") if p]
    return parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"] and _is_connect_rest(parts[4:])


def _transport_swapped(api_client: Any) -> bool:
    """True while ``call_api`` is not the client's own (``kubernetes.stream`` sends by websocket instead)."""
    own = getattr(type(api_client), "call_api", None)
    return getattr(api_client.call_api, "__func__", None) is not own
