"""Kubernetes discovery: a cluster, its namespaces, nodes and workloads as records.

get -> transform -> return. Every list is paginated (``limit``/``continue``)
and asks for metadata only (``PartialObjectMetadataList``): labels are all
labeling needs, so a ConfigMap's data never leaves the API server (ConfigMaps are
listed only when a source configures them: :data:`BUILTIN_KINDS`). Secrets are
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

Recovery facts (``Resource.facts``, docs/recovery.md): what decides whether a
delete can be undone is in the spec, so the kinds that carry such facts
(:data:`FACT_KINDS`: storage classes, volumes, claims and the workloads) are
listed and watched as full objects; everything else stays metadata only. Of a
full object only the facts are kept: a pod template's other fields (images,
environment values) are read off the wire and dropped. A claim's
``reclaim_policy`` is its bound volume's (else its storage class's), so the
scanner keeps a :class:`VolumeIndex` of both: kinds are listed in
:data:`BUILTIN_KINDS` order (classes and volumes before claims), and a volume
or class that changes under a watch re-derives the claims that depend on it
(``KindList.related``, ``WatchEvent.related``). A policy that could not be read
(its kind's list failed) is ``unreadable``; a bound volume that is not there is
unknown (no key): neither reads as recoverable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envlabel.config import KubernetesResource, KubernetesSource
from envlabel.model import Resource, ScanError, ScanResult
from envlabel.targets import k8s_target

PROVIDER = "kubernetes"
VERBS = ("get", "list", "watch")
_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;q=0.9"
_WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json;q=0.9"
#: the kinds with recovery facts (FACT_KINDS) are read whole: the facts are in the spec
_FULL_ACCEPT = "application/json"
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
    # before the claims: a claim's reclaim policy is its volume's, else its class's (VolumeIndex)
    KindSpec("storage.k8s.io", "v1", "storageclasses", False),
    KindSpec("", "v1", "persistentvolumes", False),
    KindSpec("apps", "v1", "deployments", True),
    KindSpec("apps", "v1", "statefulsets", True),
    KindSpec("apps", "v1", "daemonsets", True),
    KindSpec("batch", "v1", "jobs", True),
    KindSpec("batch", "v1", "cronjobs", True),
    KindSpec("", "v1", "services", True),
    KindSpec("networking.k8s.io", "v1", "ingresses", True),
    KindSpec("", "v1", "persistentvolumeclaims", True),
)
#: ConfigMaps are not listed by default: RBAC cannot grant their labels without their data, and a role that may list
#: every ConfigMap in the cluster reads all of its configuration. A source that decides ConfigMap actions by their
#: own labels adds ``{resource: configmaps}`` to its ``resources`` (and the ClusterRole the matching rule); without
#: it an action on a ConfigMap is decided as the strictest environment, like any target envlabel never saw.
_BUILTIN_GROUPS = frozenset(k.group for k in BUILTIN_KINDS)
#: every permission a scan and its watches use, as ``kubectl auth can-i VERB RESOURCE[.GROUP]`` arguments;
#: kubernetes-clusterrole.yaml grants exactly these
PERMISSIONS: tuple[str, ...] = tuple(f"{verb} {kind.label}" for kind in BUILTIN_KINDS for verb in VERBS)
#: never read: a secret's metadata is not worth holding the right to read its data
NEVER_READ = frozenset({("", "secrets")})
#: (group, resource) listed and watched as full objects, for their recovery facts; the rest as metadata only
WORKLOADS = frozenset({("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
                       ("batch", "jobs"), ("batch", "cronjobs")})
VOLUME_KINDS = frozenset({("storage.k8s.io", "storageclasses"), ("", "persistentvolumes"),
                          ("", "persistentvolumeclaims")})
FACT_KINDS = WORKLOADS | VOLUME_KINDS


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
    """One complete list. ``related``: claims listed earlier whose facts this list changed (a volume's policy)."""

    kind: KindSpec
    resources: list[Resource]
    resource_version: str
    related: list[Resource] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """ADDED, MODIFIED, DELETED (``resource`` is what was observed) or BOOKMARK (``resource`` is None).
    ``related``: claims whose facts the event changed (a volume or class event re-derives its claims)."""

    type: str
    resource: Resource | None
    resource_version: str
    related: tuple[Resource, ...] = ()


def cluster_id(cluster: str) -> str:
    return f"k8s://{cluster}"


def cluster_resource(source: KubernetesSource) -> Resource:
    cluster = source.cluster_name
    return Resource(cluster_id(cluster), PROVIDER, "k8s:cluster", cluster, source.parent, {},
                    scope=cluster_id(cluster), declared=source.environment)


# -- recovery facts ----------------------------------------------------------------------------------
def _pod_spec(resource: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec") or {}
    if resource == "cronjobs":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def workload_facts(resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The claims a workload's pods mount by name (``pvc_refs``) and, for a StatefulSet, the claim
    templates it creates one claim per replica from (``volume_claim_templates``)."""
    volumes = _pod_spec(resource, obj).get("volumes") or []
    claims = {str(v["persistentVolumeClaim"]["claimName"]) for v in volumes
              if isinstance(v, Mapping) and (v.get("persistentVolumeClaim") or {}).get("claimName")}
    facts: dict[str, Any] = {"pvc_refs": sorted(claims)}
    if resource == "statefulsets":
        templates = (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        facts["volume_claim_templates"] = sorted(str((t.get("metadata") or {}).get("name", "")) for t in templates)
    return facts


def volume_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A PersistentVolume: what happens to the disk when its claim goes (``reclaim_policy``), its class and
    the claim bound to it (``claim``: ``namespace/name``, null while unbound)."""
    spec = obj.get("spec") or {}
    facts: dict[str, Any] = {"storage_class": str(spec.get("storageClassName") or "")}
    if spec.get("persistentVolumeReclaimPolicy"):
        facts["reclaim_policy"] = str(spec["persistentVolumeReclaimPolicy"])
    ref = spec.get("claimRef") or {}
    facts["claim"] = f"{ref['namespace']}/{ref['name']}" if ref.get("name") and ref.get("namespace") else None
    return facts


def class_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A StorageClass: the reclaim policy the volumes it provisions get."""
    return {"reclaim_policy": str(obj["reclaimPolicy"])} if obj.get("reclaimPolicy") else {}


def claim_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A claim's own facts: its class and bound volume. ``reclaim_policy`` comes from those (VolumeIndex)."""
    spec = obj.get("spec") or {}
    facts: dict[str, Any] = {}
    if spec.get("storageClassName") is not None:
        facts["storage_class"] = str(spec["storageClassName"])
    if spec.get("volumeName"):
        facts["volume"] = str(spec["volumeName"])
    return facts


def object_facts(kind: KindSpec, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The recovery facts one full object carries by itself ({} for a kind without facts, or metadata)."""
    if "spec" not in obj and kind.resource != "storageclasses":
        return {}  # PartialObjectMetadata: nothing to read
    key = (kind.group, kind.resource)
    if key in WORKLOADS:
        return workload_facts(kind.resource, obj)
    if key == ("", "persistentvolumes"):
        return volume_facts(obj)
    if key == ("storage.k8s.io", "storageclasses"):
        return class_facts(obj) if "provisioner" in obj else {}
    if key == ("", "persistentvolumeclaims"):
        return claim_facts(obj)
    return {}


class VolumeIndex:
    """Reclaim policies of the volumes and classes last listed or watched, and the claims that depend on them.

    Shared by the watch threads of one scanner, hence the lock. A kind counts as ``listed`` after its first
    complete list; until then a claim's policy is ``unreadable`` (not known), never guessed."""

    _SOURCES = ("persistentvolumes", "storageclasses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policies: dict[str, dict[str, str | None]] = {k: {} for k in self._SOURCES}
        self._listed: set[str] = set()
        self._claims: dict[str, Resource] = {}

    def claim(self, record: Resource) -> Resource:
        """Remember a claim (its own facts already on it) and return it with its ``reclaim_policy``."""
        with self._lock:
            self._claims[record.id] = record
            return self._with_policy(record)

    def forget_claim(self, claim_id: str) -> None:
        with self._lock:
            self._claims.pop(claim_id, None)

    def keep_claims(self, claim_ids: Iterable[str]) -> None:
        """After a complete list of claims: forget the ones it lacked."""
        keep = set(claim_ids)
        with self._lock:
            self._claims = {i: r for i, r in self._claims.items() if i in keep}

    def replace(self, resource: str, policies: Mapping[str, str | None]) -> list[Resource]:
        """A complete list of volumes or classes; returns the claims whose facts it changed."""
        return self._changing(lambda: self._set(resource, dict(policies)))

    def observe(self, resource: str, name: str, policy: str | None, deleted: bool = False) -> list[Resource]:
        """One watched volume or class; returns the claims whose facts it changed."""
        def change() -> None:
            if deleted:
                self._policies[resource].pop(name, None)
            else:
                self._policies[resource][name] = policy
        return self._changing(change)

    def current(self, resources: Iterable[Resource]) -> list[Resource]:
        """``resources`` with each known claim's facts derived again from the index as it is now."""
        with self._lock:
            return [self._with_policy(self._claims[r.id]) if r.id in self._claims else r for r in resources]

    def _set(self, resource: str, policies: dict[str, str | None]) -> None:
        self._policies[resource] = policies
        self._listed.add(resource)

    def _changing(self, change: Any) -> list[Resource]:
        with self._lock:
            before = {i: self._with_policy(r) for i, r in self._claims.items()}
            change()
            after = {i: self._with_policy(r) for i, r in self._claims.items()}
        return [r for i, r in after.items() if r.facts != before[i].facts]

    def _with_policy(self, record: Resource) -> Resource:
        facts = {k: v for k, v in record.facts.items() if k not in ("reclaim_policy", "unreadable")}
        if facts.get("volume"):  # bound: only the volume's own policy counts (it may differ from its class's)
            source, name = "persistentvolumes", str(facts["volume"])
        elif facts.get("storage_class"):  # unbound: the volume it will get takes its class's policy
            source, name = "storageclasses", str(facts["storage_class"])
        else:
            return dataclasses.replace(record, facts=facts)
        if source not in self._listed:
            facts["unreadable"] = ["reclaim_policy"]
        elif self._policies[source].get(name):
            facts["reclaim_policy"] = self._policies[source][name]
        return dataclasses.replace(record, facts=facts)


def _policy_of(record: Resource) -> str | None:
    policy = record.facts.get("reclaim_policy")
    return str(policy) if policy else None


def transform_object(cluster: str, kind: KindSpec, obj: dict[str, Any]) -> Resource:
    """One listed object (full or PartialObjectMetadata) -> its record, with the facts it carries itself."""
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
                    aliases=aliases, facts=object_facts(kind, obj))


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
        self.volumes = VolumeIndex()

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
        accept = _FULL_ACCEPT if (kind.group, kind.resource) in FACT_KINDS else _LIST_ACCEPT
        while True:
            query: list[tuple[str, Any]] = [("limit", self.page_size)]
            if token:
                query.append(("continue", token))
            body = json.loads(self._get(kind, query, accept, timeout=(10, 120)).read())
            resources += [transform_object(self.cluster, kind, item) for item in body.get("items") or []]
            meta = body.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                resources, related = self._listed(kind, resources)
                return KindList(kind, resources, str(meta.get("resourceVersion", "")), related)

    def _listed(self, kind: KindSpec, resources: list[Resource]) -> tuple[list[Resource], list[Resource]]:
        """A complete list into the volume index: (the records, with claims' policies; claims it re-derived)."""
        if (kind.group, kind.resource) == ("", "persistentvolumeclaims"):
            self.volumes.keep_claims(r.id for r in resources)
            return [self.volumes.claim(r) for r in resources], []
        if (kind.group, kind.resource) in VOLUME_KINDS:
            return resources, self.volumes.replace(kind.resource, {r.name: _policy_of(r) for r in resources})
        return resources, []

    def _observed(self, kind: KindSpec, event_type: str, record: Resource) -> tuple[Resource, tuple[Resource, ...]]:
        """One watched object into the volume index: (its record, the claims it re-derived)."""
        deleted = event_type == "DELETED"
        if (kind.group, kind.resource) == ("", "persistentvolumeclaims"):
            if deleted:
                self.volumes.forget_claim(record.id)
                return record, ()
            return self.volumes.claim(record), ()
        if (kind.group, kind.resource) in VOLUME_KINDS:
            return record, tuple(self.volumes.observe(kind.resource, record.name, _policy_of(record), deleted))
        return record, ()

    # -- watch -----------------------------------------------------------------------------------
    def watch(self, kind: KindSpec, resource_version: str, timeout_seconds: int = 300) -> WatchStream:
        """Open a watch of ``kind`` from ``resource_version`` with bookmarks. Close it to stop."""
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", timeout_seconds)]
        accept = _FULL_ACCEPT if (kind.group, kind.resource) in FACT_KINDS else _WATCH_ACCEPT
        response = self._get(kind, query, accept, timeout=(10, timeout_seconds + 30))
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
        record, related = self.scanner._observed(self.kind, kind_of_event,
                                                 transform_object(self.scanner.cluster, self.kind, obj))
        return WatchEvent(kind_of_event, record, version, related)

    def close(self) -> None:
        """Unblock a reader waiting for the next event (urllib3's shutdown is meant for this)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ValueError, RuntimeError):  # the stream already ended and released its connection
            self.response.shutdown()
