"""Kubernetes discovery: a cluster, its namespaces, nodes and workloads as records.

get -> transform -> return. Every list is paginated (``limit``/``continue``)
and asks for metadata only (``PartialObjectMetadataList``): labels are all
labeling needs, so a ConfigMap's data never leaves the API server. Secrets are
never read, not even their names. A list whose continue token expires (410)
restarts from the beginning; a kind that cannot be listed completely is a
:class:`ScanError`, never a short list (STYLE 6), and the cluster's scope is
then not reported as scanned, so nothing is removed.

The same client serves the daemon's watches (:meth:`KubernetesScanner.watch`):
``envlabel.service.daemon.watch`` drives them and applies each event to the store.

Records: ``k8s://CLUSTER`` (kind ``k8s:cluster``, parent = the source's
``parent``, e.g. the EKS or GKE cluster resource, ``declared`` = the source's
``environment``); ``k8s://CLUSTER/namespaces/NAME``; ``k8s://CLUSTER/nodes/NAME``;
``k8s://CLUSTER/NAMESPACE/KIND/NAME`` under their namespace. Tags are the
objects' labels; annotations are not signals.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from envlabel.config import KubernetesResource, KubernetesSource
from envlabel.model import Resource, ScanError, ScanResult
from envlabel.targets import k8s_target

PROVIDER = "kubernetes"
VERBS = ("get", "list", "watch")
_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;q=0.9"
_WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json;q=0.9"
#: how often a list whose continue token expired (410) is restarted before the kind counts as failed
LIST_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One listed resource type: its API group, version, plural resource name and scope."""

    group: str
    version: str
    resource: str
    namespaced: bool

    @property
    def path(self) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/{self.resource}"

    @property
    def label(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


#: the kinds every scan lists; the ClusterRole (kubernetes-clusterrole.yaml) grants exactly these
BUILTIN_KINDS: tuple[KindSpec, ...] = (
    KindSpec("", "v1", "namespaces", False),
    KindSpec("", "v1", "nodes", False),
    KindSpec("apps", "v1", "deployments", True),
    KindSpec("apps", "v1", "statefulsets", True),
    KindSpec("apps", "v1", "daemonsets", True),
    KindSpec("batch", "v1", "jobs", True),
    KindSpec("batch", "v1", "cronjobs", True),
    KindSpec("", "v1", "services", True),
    KindSpec("networking.k8s.io", "v1", "ingresses", True),
    KindSpec("", "v1", "persistentvolumeclaims", True),
    KindSpec("", "v1", "configmaps", True),
)
_BUILTIN_GROUPS = frozenset(k.group for k in BUILTIN_KINDS)
#: every permission a scan and its watches use, as ``kubectl auth can-i VERB RESOURCE[.GROUP]`` arguments;
#: kubernetes-clusterrole.yaml grants exactly these
PERMISSIONS: tuple[str, ...] = tuple(f"{verb} {kind.label}" for kind in BUILTIN_KINDS for verb in VERBS)
#: never read: a secret's metadata is not worth holding the right to read its data
NEVER_READ = frozenset({("", "secrets")})


@dataclass(frozen=True, slots=True)
class Rule:
    """One RBAC rule a scanner needs."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...] = VERBS


def rules_for(kinds: Sequence[KindSpec]) -> list[Rule]:
    """The ClusterRole rules that cover ``kinds`` (get, list, watch), one per API group."""
    grouped: dict[str, set[str]] = {}
    for kind in kinds:
        grouped.setdefault(kind.group, set()).add(kind.resource)
    return [Rule(group, tuple(sorted(resources))) for group, resources in sorted(grouped.items())]


class KubernetesScanFailure(Exception):
    """A kind could not be listed or watched; ``error`` says what to do."""

    def __init__(self, error: ScanError) -> None:
        super().__init__(error.message)
        self.error = error


class ResourceExpired(KubernetesScanFailure):
    """410 Gone: a continue token or a watch's resourceVersion is too old; list again."""


@dataclass(frozen=True, slots=True)
class KindList:
    kind: KindSpec
    resources: list[Resource]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """ADDED, MODIFIED, DELETED (``resource`` is what was observed) or BOOKMARK (``resource`` is None)."""

    type: str
    resource: Resource | None
    resource_version: str


def cluster_id(cluster: str) -> str:
    return f"k8s://{cluster}"


def cluster_resource(source: KubernetesSource) -> Resource:
    cluster = source.cluster_name
    return Resource(cluster_id(cluster), PROVIDER, "k8s:cluster", cluster, source.parent, {},
                    scope=cluster_id(cluster), declared=source.environment)


def transform_object(cluster: str, kind: KindSpec, obj: dict[str, Any]) -> Resource:
    """One listed object (full or PartialObjectMetadata) -> its record."""
    meta = obj.get("metadata") or {}
    name = str(meta["name"])
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    aliases: tuple[str, ...] = ()
    if kind.namespaced:
        namespace = str(meta["namespace"])
        target = k8s_target(cluster, kind.resource, name, namespace)
        parent = k8s_target(cluster, "namespaces", namespace)
        if kind.group not in _BUILTIN_GROUPS:  # kubectl also accepts resource.group for custom resources
            aliases = (k8s_target(cluster, kind.label, name, namespace),)
    else:
        target = k8s_target(cluster, kind.resource, name)
        parent = cluster_id(cluster)
        if kind.group not in _BUILTIN_GROUPS:
            aliases = (k8s_target(cluster, kind.label, name),)
    return Resource(target, PROVIDER, f"k8s:{kind.resource}", name, parent, labels, scope=cluster_id(cluster),
                    aliases=aliases)


def configured_kind(resource: KubernetesResource) -> KindSpec:
    return KindSpec(resource.group, resource.version, resource.resource, resource.namespaced)


def build_api_client(source: KubernetesSource) -> Any:
    """An ApiClient from the source's kubeconfig and context, or from the pod's service account."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if source.in_cluster:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=source.kubeconfig, context=source.context,
            client_configuration=configuration, persist_config=False)
    configuration.connection_pool_maxsize = 32  # each watch holds one connection
    return client.ApiClient(configuration)


class KubernetesScanner:
    """Lists one cluster. ``api_client`` (a ``kubernetes.client.ApiClient``) is built from the source if not given."""

    def __init__(self, source: KubernetesSource, api_client: Any = None, page_size: int = 500) -> None:
        self.source = source
        self.cluster = source.cluster_name
        self.scope = cluster_id(self.cluster)
        self.page_size = page_size
        self._api_client = api_client
        self._client_lock = threading.Lock()
        self.kinds: tuple[KindSpec, ...] = BUILTIN_KINDS + tuple(
            k for k in map(configured_kind, source.resources) if k not in BUILTIN_KINDS)

    @property
    def api_client(self) -> Any:
        with self._client_lock:  # watch threads share one client (and its connection pool)
            if self._api_client is None:
                self._api_client = build_api_client(self.source)
            return self._api_client

    def _client(self) -> Any:
        try:
            return self.api_client
        except Exception as exc:  # the kubernetes config loader raises several unrelated types
            where = "in-cluster service account" if self.source.in_cluster else (
                f"kubeconfig {self.source.kubeconfig or '$KUBECONFIG or ~/.kube/config'}"
                f"{f' context {self.source.context}' if self.source.context else ''}")
            raise KubernetesScanFailure(ScanError(
                self.scope, f"cannot load the {where}: {exc}",
                "set kubeconfig and context (or in_cluster: true) on this source; nothing was removed")) from exc

    def rules(self) -> list[Rule]:
        """The RBAC rules this scanner's lists and watches need."""
        return rules_for(self.kinds)

    # -- scan ------------------------------------------------------------------------------------
    def scan(self) -> ScanResult:
        resources = [cluster_resource(self.source)]
        errors: list[ScanError] = []
        try:
            self._client()  # load the kubeconfig now, so a bad one is one clear error, not one per kind
        except KubernetesScanFailure as failure:
            return ScanResult(self.source.name, [], [failure.error])
        for kind in self.kinds:
            try:
                resources += self.list_kind(kind).resources
            except KubernetesScanFailure as failure:
                errors.append(failure.error)
        # the cluster counts as scanned only when every kind was listed completely
        return ScanResult(self.source.name, resources, errors, frozenset() if errors else frozenset({self.scope}))

    def list_kind(self, kind: KindSpec) -> KindList:
        """Every object of ``kind``, page by page; restarts when a continue token expires."""
        if (kind.group, kind.resource) in NEVER_READ:
            raise KubernetesScanFailure(ScanError(
                self.scope, f"{kind.label} are never read by envlabel",
                f"remove {kind.resource} from the resources of source {self.source.name}"))
        for _ in range(LIST_ATTEMPTS):
            try:
                return self._list_pages(kind)
            except ResourceExpired:
                continue  # the snapshot is gone: start a fresh, consistent list
        raise KubernetesScanFailure(ScanError(
            self.scope, f"listing {kind.label} expired (410 Gone) {LIST_ATTEMPTS} times in a row",
            "the API server compacts faster than the list pages; scan again, or raise the page size"))

    def _list_pages(self, kind: KindSpec) -> KindList:
        resources: list[Resource] = []
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", self.page_size)]
            if token:
                query.append(("continue", token))
            body = json.loads(self._get(kind, query, _LIST_ACCEPT, timeout=(10, 120)).read())
            resources += [transform_object(self.cluster, kind, item) for item in body.get("items") or []]
            meta = body.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return KindList(kind, resources, str(meta.get("resourceVersion", "")))

    # -- watch -----------------------------------------------------------------------------------
    def watch(self, kind: KindSpec, resource_version: str, timeout_seconds: int = 300) -> WatchStream:
        """Open a watch of ``kind`` from ``resource_version`` with bookmarks. Close it to stop."""
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", timeout_seconds)]
        response = self._get(kind, query, _WATCH_ACCEPT, timeout=(10, timeout_seconds + 30))
        return WatchStream(self, kind, response.response)

    # -- HTTP ------------------------------------------------------------------------------------
    def _get(self, kind: KindSpec, query: list[tuple[str, Any]], accept: str, timeout: tuple[int, int]) -> Any:
        client = self._client()
        try:
            request = client.param_serialize("GET", kind.path, query_params=query, header_params={"Accept": accept},
                                             auth_settings=["BearerToken"])
            response = client.call_api(*request, _request_timeout=timeout)
        except Exception as exc:  # urllib3 and the client raise many types for an unreachable server
            host = getattr(getattr(client, "configuration", None), "host", "?")
            raise KubernetesScanFailure(ScanError(
                self.scope, f"cannot reach the Kubernetes API server at {host} to list {kind.label}: {exc}",
                "check the kubeconfig server, the network and the credentials; nothing was removed")) from exc
        if response.status != 200:
            raise self._failure(kind, response.status, response.read())
        return response

    def _failure(self, kind: KindSpec, status: int, body: bytes) -> KubernetesScanFailure:
        try:
            message = str(json.loads(body).get("message") or "")
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        if status == 410:
            return ResourceExpired(ScanError(self.scope, f"{kind.label}: 410 Gone: {message}", "list again"))
        hints = {
            401: "the credentials were refused: refresh the kubeconfig user's token or certificate",
            403: (f"grant get, list and watch on {kind.resource} in API group \"{kind.group}\" to envlabel's "
                  "identity: apply discovery/kubernetes-clusterrole.yaml and bind it (see docs/kubernetes.md)"),
            404: (f"the API server does not serve {kind.group or 'core'}/{kind.version} {kind.resource}; remove it "
                  f"from the resources of source {self.source.name} or install its CustomResourceDefinition"),
        }
        what = "forbidden: missing RBAC rule for" if status == 403 else f"HTTP {status} listing"
        return KubernetesScanFailure(ScanError(
            self.scope, f"{what} {kind.label} ({kind.group or 'core'} API group): {message}",
            hints.get(status, "check the API server's health; nothing was removed")))


class WatchStream:
    """Events of one open watch, as records. ``close()`` from another thread ends the iteration promptly."""

    def __init__(self, scanner: KubernetesScanner, kind: KindSpec, response: Any) -> None:
        self.scanner = scanner
        self.kind = kind
        self.response = response
        self.closed = False

    def __iter__(self) -> Iterator[WatchEvent]:
        from kubernetes.watch.watch import iter_resp_lines

        try:
            for line in iter_resp_lines(self.response):  # type: ignore[no-untyped-call]
                if not line:
                    continue
                yield self._event(json.loads(line))
        except KubernetesScanFailure:
            raise
        except Exception as exc:  # a dropped connection mid-stream
            if self.closed:
                return
            raise KubernetesScanFailure(ScanError(
                self.scanner.scope, f"the watch of {self.kind.label} broke: {exc}", "it is reopened")) from exc
        finally:
            if self.closed:  # a shut-down socket must not go back to the pool
                self.response.close()
            else:
                self.response.release_conn()

    def _event(self, event: dict[str, Any]) -> WatchEvent:
        kind_of_event = str(event.get("type"))
        obj = event.get("object") or {}
        if kind_of_event == "ERROR":
            raise self.scanner._failure(self.kind, int(obj.get("code") or 500), json.dumps(obj).encode())
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if kind_of_event == "BOOKMARK":
            return WatchEvent(kind_of_event, None, version)
        return WatchEvent(kind_of_event, transform_object(self.scanner.cluster, self.kind, obj), version)

    def close(self) -> None:
        """Unblock a reader waiting for the next event (urllib3's shutdown is meant for this)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ValueError, RuntimeError):  # the stream already ended and released its connection
            self.response.shutdown()
