"""The fake Kubernetes API server's state: objects, a global resourceVersion, the event log, the request log.

What the real API server keeps in etcd, kept in memory: objects by (group,
version, resource) and (namespace, name), one resourceVersion counter, the
events watches replay, and a floor below which history is compacted (410
Gone). Tests and the demo drive it through :class:`FakeKubernetes`
(``seed``, ``set_labels``, ``remove``, ``forbid``, ``compact``,
``bookmark``); ``envlabel.service.demo.fakes.kubernetes_api`` serves it over HTTP.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Kind("", "v1", "nodes", "Node", False, ("no",)),
    Kind("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Kind("", "v1", "secrets", "Secret", True),
    Kind("", "v1", "services", "Service", True, ("svc",)),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    Kind("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    Kind("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    Kind("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Kind("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    Kind("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    Kind("batch", "v1", "jobs", "Job", True),
    Kind("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", True),
    Kind("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration",
         False),
)
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
#: what `kubectl get all` lists
CATEGORY_ALL = frozenset({"services", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"})
META_GROUP = "meta.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake served: the RBAC verb and what it touched."""

    method: str
    path: str
    verb: str
    group: str = ""
    resource: str = ""
    namespace: str | None = None
    name: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    #: the Accept header: tests tell a metadata-only read (``as=PartialObjectMetadata``) from a whole one
    accept: str = ""


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_template(name: str, restart: str = "Always") -> Obj:
    return {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], "restartPolicy": restart}}


def skeleton(kind: Kind, name: str) -> Obj:
    """The spec/status a complete object of ``kind`` needs (the client's required fields)."""
    selector = {"matchLabels": {"app": name}}
    bodies: dict[str, Obj] = {
        "namespaces": {"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
        "nodes": {"spec": {"podCIDR": "10.0.0.0/24"},
                  "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        "configmaps": {"data": {}},
        "secrets": {"type": "Opaque", "data": {}},
        "services": {"spec": {"type": "ClusterIP", "selector": {"app": name},
                              "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]},
                     "status": {"loadBalancer": {}}},
        "persistentvolumeclaims": {"spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                                            "resources": {"requests": {"storage": "1Gi"}}},
                                   "status": {"phase": "Bound"}},
        # a statically provisioned volume: the API server defaults its reclaim policy to Retain
        "persistentvolumes": {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                       "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem",
                                       "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": f"vol-{name}"}},
                              "status": {"phase": "Available"}},
        # no spec: a StorageClass's fields are top-level; the API server defaults reclaimPolicy to Delete
        "storageclasses": {"provisioner": "ebs.csi.aws.com", "reclaimPolicy": "Delete",
                           "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True},
        "deployments": {"spec": {"replicas": 1, "selector": selector, "template": _pod_template(name)},
                        "status": {}},
        "statefulsets": {"spec": {"replicas": 1, "serviceName": name, "selector": selector,
                                  "template": _pod_template(name)}, "status": {"replicas": 1}},
        "daemonsets": {"spec": {"selector": selector, "template": _pod_template(name)},
                       "status": {"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                                  "numberMisscheduled": 0, "numberReady": 0}},
        "jobs": {"spec": {"template": _pod_template(name, "Never")}, "status": {}},
        "cronjobs": {"spec": {"schedule": "*/5 * * * *",
                              "jobTemplate": {"spec": {"template": _pod_template(name, "Never")}}}, "status": {}},
        "ingresses": {"spec": {"rules": [{"host": f"{name}.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}, "status": {}},
        "leases": {"spec": {}},
        "pods": {"spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]},
                 "status": {"phase": "Running"}},
    }
    return copy.deepcopy(bodies.get(kind.resource, {}))


# -- label selectors -------------------------------------------------------------------------------
_REQUIREMENT = re.compile(r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*"
                          r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*$")


def _requirement(m: re.Match[str]) -> Callable[[Mapping[str, str]], bool]:
    key = m["key"]
    if m["op"]:
        value, negate = m["value"], m["op"] == "!="
        return lambda labels: (labels.get(key) == value) != negate
    if m["set"]:
        values = {v.strip() for v in m["values"].split(",") if v.strip()}
        excluded = m["set"] == "notin"
        return lambda labels: (labels.get(key) in values) != excluded
    absent = bool(m["neg"])
    return lambda labels: (key in labels) != absent


def parse_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """Equality- and set-based label selectors (``a=b,c!=d,e in (x,y),!f``) -> a predicate."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for part in (p for p in parts if p.strip()):
        m = _REQUIREMENT.match(part)
        if not m or (m["neg"] and (m["op"] or m["set"])):
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        tests.append(_requirement(m))
    return lambda labels: all(t(labels) for t in tests)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 (strategic merge is served as merge: lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_patch(target: Obj, operations: list[Obj]) -> Obj:
    """RFC 6902 add/replace/remove/test, enough for clients that patch labels."""
    doc = copy.deepcopy(target)
    for op in operations:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in str(op.get("path", "")).split("/")[1:]]
        if not keys:
            raise ApiError(422, "Invalid", f"json patch path {op.get('path')!r} is empty")
        parent: Any = doc
        for key in keys[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent.setdefault(key, {})
        last = keys[-1]
        kind = op.get("op")
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op.get("value"))
            else:
                parent[last] = op.get("value")
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            elif parent.pop(last, None) is None:
                raise ApiError(422, "Invalid", f"json patch: {op.get('path')} does not exist")
        elif kind == "test":
            if parent.get(last) != op.get("value"):
                raise ApiError(422, "Invalid", f"json patch test failed at {op.get('path')}")
        else:
            raise ApiError(415, "UnsupportedMediaType", f"json patch op {kind!r} is not served by the fake")
    return doc


def partial_metadata(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": META_GROUP, "metadata": obj["metadata"]}


class FakeKubernetes:
    """The in-memory API state, a global resourceVersion counter and the event log watches replay."""

    def __init__(self, bookmark_interval: float | None = None) -> None:
        self.kinds: dict[tuple[str, str, str], Kind] = {(k.group, k.version, k.resource): k for k in KINDS}
        self.objects: dict[tuple[str, str, str], dict[tuple[str, str], Obj]] = {key: {} for key in self.kinds}
        self.rv = 1
        self.compacted_rv = 0
        #: (rv, type, kind key, object), in rv order; kept after compaction for the watches already open
        self.events: list[tuple[int, str, tuple[str, str, str], Obj]] = []
        self.requests: list[RequestRecord] = []
        self.forbidden: set[tuple[str, str]] = set()
        #: admission (kubernetes_admission.py): bearer token -> userInfo; "NAMESPACE/NAME" of a webhook's Service
        #: -> the "host:port" it is served on (no cluster DNS); every webhook call (config, webhook, request, response)
        self.users: dict[str, Obj] = {}
        self.services: dict[str, str] = {}
        self.admission_calls: list[tuple[str, str, Obj, Obj | None]] = []
        self.bookmark_interval = bookmark_interval
        self.cond = threading.Condition()
        self.bookmarks = 0  # bumped by bookmark(): every open watch sends one
        self.expired = 0  # bumped by compact(expire_watches=True): every open watch gets a 410
        self.stopping = False
        self.server: ThreadingHTTPServer | None = None
        #: called before every list page with (kind, continue token): tests compact the store mid-list with it
        self.on_list: Callable[[Kind, str], None] | None = None
        #: per kind, object keys joined as "namespace/name" in order: pages are bisected, not re-sorted
        self._order: dict[tuple[str, str, str], list[str]] = {}

    # -- the Python API tests and the demo use -------------------------------------------------------
    def kind(self, resource: str, group: str | None = None) -> Kind:
        for k in self.kinds.values():
            if k.resource == resource and (group is None or k.group == group):
                return k
        raise KeyError(f"the fake serves no resource {resource!r}; add it with define()")

    def define(self, group: str, version: str, resource: str, kind: str, namespaced: bool = True) -> Kind:
        """Serve a further (custom) resource."""
        with self.cond:
            k = Kind(group, version, resource, kind, namespaced)
            self.kinds[(group, version, resource)] = k
            self.objects.setdefault((group, version, resource), {})
            return k

    def seed(self, resource: str, name: str, namespace: str | None = None, *, labels: Mapping[str, str] | None = None,
             annotations: Mapping[str, str] | None = None, group: str | None = None,
             fields: Mapping[str, Any] | None = None) -> Obj:
        """Create (or replace) a complete object of ``resource``; returns it as served. ``fields`` is merged
        (RFC 7386) into the skeleton: ``{"spec": {"storageClassName": "gp3"}}``."""
        kind = self.kind(resource, group)
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **_merge_patch(skeleton(kind, name), fields or {}),
                "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}}
        if kind.namespaced:
            body["metadata"]["namespace"] = namespace or "default"
        with self.cond:
            key = (body["metadata"].get("namespace", ""), name)
            if key in self.objects[self._key(kind)]:
                return self.update(kind, body["metadata"].get("namespace"), name, body, check_version=False)
            return self.create(kind, body["metadata"].get("namespace"), body)

    def bind_claim(self, claim: str, namespace: str, reclaim_policy: str = "Delete", storage_class: str = "gp3",
                   volume: str | None = None) -> Obj:
        """Provision a PersistentVolume for the claim and bind the two, as the CSI provisioner and the PV
        controller do: the volume gets the class's reclaim policy and a ``claimRef``, the claim its
        ``volumeName``. Returns the volume."""
        with self.cond:
            pvc = self.find(self.kind("persistentvolumeclaims"), namespace, claim)
            name = volume or f"pvc-{pvc['metadata']['uid']}"
            pv = self.seed("persistentvolumes", name, fields={
                "spec": {"persistentVolumeReclaimPolicy": reclaim_policy, "storageClassName": storage_class,
                         "claimRef": {"kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim,
                                      "uid": pvc["metadata"]["uid"], "apiVersion": "v1"}},
                "status": {"phase": "Bound"}})
            self.patch(self.kind("persistentvolumeclaims"), namespace, claim, {
                "spec": {"volumeName": name, "storageClassName": storage_class}, "status": {"phase": "Bound"}})
            return pv

    def set_labels(self, resource: str, name: str, labels: Mapping[str, str | None], namespace: str | None = None,
                   group: str | None = None) -> Obj:
        """Merge ``labels`` into the object's labels (``None`` removes a key): one MODIFIED event."""
        return self.patch(self.kind(resource, group), namespace, name, {"metadata": {"labels": dict(labels)}})

    def remove(self, resource: str, name: str, namespace: str | None = None, group: str | None = None) -> None:
        self.delete(self.kind(resource, group), namespace, name)

    def forbid(self, resource: str, group: str = "") -> None:
        """Answer 403 for every request on ``resource`` (an RBAC rule the client lacks)."""
        self.forbidden.add((group, resource))

    def compact(self, expire_watches: bool = False, up_to: int | None = None) -> int:
        """Forget history: watches opened from an older resourceVersion and older continue tokens get 410 Gone.
        Open watches go on (the API server's watch cache keeps them fed) unless ``expire_watches``, which
        ends each with a 410 ERROR event. ``up_to`` compacts below that version, as etcd compacts to a past
        revision; by default everything before now is gone. Returns the new floor."""
        with self.cond:
            if up_to is None:
                self.rv += 1  # lists and watches started from here on are valid; older ones are not
                up_to = self.rv
            self.compacted_rv = max(self.compacted_rv, up_to)
            if expire_watches:
                self.expired += 1
            self.cond.notify_all()
            return self.compacted_rv

    def bookmark(self) -> None:
        """Send a BOOKMARK to every open watch that asked for them."""
        with self.cond:
            self.bookmarks += 1
            self.cond.notify_all()

    def clear_requests(self) -> None:
        with self.cond:
            self.requests.clear()

    # -- the operations ----------------------------------------------------------------------------
    @staticmethod
    def _key(kind: Kind) -> tuple[str, str, str]:
        return (kind.group, kind.version, kind.resource)

    def _record(self, kind: Kind, event: str, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, event, self._key(kind), obj))
        self.cond.notify_all()
        return obj

    def find(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        obj = self.objects[self._key(kind)].get((namespace or "", name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.resource}{"." + kind.group if kind.group else ""} "{name}" '
                           "not found", )
        return obj

    def create(self, kind: Kind, namespace: str | None, body: Obj) -> Obj:
        with self.cond:
            meta = body.setdefault("metadata", {})
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", f"{kind.kind}: metadata.name: Required value")
            if kind.namespaced:
                namespace = namespace or meta.get("namespace") or "default"
                if ("", namespace) not in self.objects[("", "v1", "namespaces")]:
                    raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
                meta["namespace"] = namespace
            store = self.objects[self._key(kind)]
            if (namespace or "", name) in store:
                raise ApiError(409, "AlreadyExists", f'{kind.resource} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj.update(apiVersion=kind.api_version, kind=kind.kind)
            obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            obj["metadata"].setdefault("labels", {})
            obj["metadata"].setdefault("annotations", {})
            store[(namespace or "", name)] = obj
            self._order.pop(self._key(kind), None)
            return copy.deepcopy(self._record(kind, "ADDED", obj))

    def update(self, kind: Kind, namespace: str | None, name: str, body: Obj, check_version: bool = True) -> Obj:
        with self.cond:
            current = self.find(kind, namespace, name)
            sent = body.get("metadata", {}).get("resourceVersion")
            if check_version and sent and sent != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.resource} "{name}": the '
                               "object has been modified; please apply your changes to the latest version and try "
                               "again")
            obj = copy.deepcopy(body)
            obj.update(apiVersion=kind.api_version, kind=kind.kind)
            meta = obj.setdefault("metadata", {})
            for keep in ("uid", "creationTimestamp", "namespace", "name"):
                if keep in current["metadata"]:
                    meta[keep] = current["metadata"][keep]
            meta["generation"] = current["metadata"].get("generation", 1) + 1
            meta.setdefault("labels", {})
            meta.setdefault("annotations", {})
            self.objects[self._key(kind)][(namespace or "", name)] = obj
            return copy.deepcopy(self._record(kind, "MODIFIED", obj))

    def patch(self, kind: Kind, namespace: str | None, name: str, patch: Any) -> Obj:
        with self.cond:
            current = self.find(kind, namespace, name)
            patched = _json_patch(current, patch) if isinstance(patch, list) else _merge_patch(current, patch)
            patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(kind, namespace, name, patched)

    def delete(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        with self.cond:
            obj = self.find(kind, namespace, name)
            if kind.resource == "namespaces":  # the namespace controller's work, done at once
                for other, store in self.objects.items():
                    for key in [k for k in store if self.kinds[other].namespaced and k[0] == name]:
                        self._order.pop(other, None)
                        self._record(self.kinds[other], "DELETED", store.pop(key))
            del self.objects[self._key(kind)][(namespace or "", name)]
            self._order.pop(self._key(kind), None)
            self._record(kind, "DELETED", obj)
            details = {"name": name, "group": kind.group, "kind": kind.resource, "uid": obj["metadata"]["uid"]}
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def list_objects(self, kind: Kind, namespace: str | None, selector: str = "", limit: int = 0,
             token: str = "") -> Obj:
        """One page of a list; ``token`` is a continue token from an earlier page."""
        if self.on_list is not None:
            self.on_list(kind, token)
        with self.cond:
            start, list_rv = "", self.rv
            if token:
                try:
                    state = json.loads(base64.urlsafe_b64decode(token.encode()))
                    start, list_rv = str(state["start"]), int(state["rv"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(410, "Expired", "the provided continue parameter is not valid; restart the "
                                   "list without it") from None
                if list_rv < self.compacted_rv:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue "
                                   "parameter.")
            match = parse_selector(selector)
            key = self._key(kind)
            store = self.objects[key]
            order = self._order.get(key)
            if order is None:
                order = self._order[key] = sorted("/".join(k) for k in store)
            prefix = f"{namespace}/" if namespace is not None else ""
            position = max(bisect.bisect_right(order, start) if start else 0, bisect.bisect_left(order, prefix))
            items: list[Obj] = []
            more = False
            for joined in order[position:]:
                if not joined.startswith(prefix):
                    break
                obj = store[tuple(joined.split("/", 1))]  # type: ignore[index]
                if not match(obj["metadata"].get("labels") or {}):
                    continue
                if limit > 0 and len(items) == limit:
                    more = True
                    break
                # list items carry no apiVersion/kind in the real API; stored objects are never mutated in place
                items.append({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
                last = joined
        metadata: Obj = {"resourceVersion": str(list_rv)}
        if more:
            token = json.dumps({"rv": list_rv, "start": last})
            metadata["continue"] = base64.urlsafe_b64encode(token.encode()).decode()
        return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": metadata, "items": items}

    def watch_events(self, kind: Kind, namespace: str | None, since: int, selector: str,
                     expired_at: int) -> tuple[list[tuple[int, str, Obj]], int]:
        """Events of an open watch of ``kind`` after ``since`` (caller holds ``cond``); 410 once it is expired."""
        if self.expired != expired_at:
            raise ApiError(410, "Expired", f"too old resource version: {since} ({self.compacted_rv})")
        match = parse_selector(selector)
        key = self._key(kind)
        first = bisect.bisect_right(self.events, since, key=lambda e: e[0])  # events are in rv order
        found = [(rv, t, o) for rv, t, k, o in self.events[first:] if k == key
                 and (namespace is None or o["metadata"].get("namespace") == namespace)
                 and match(o["metadata"].get("labels") or {})]
        return found, self.rv

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def seed_estate(fake: FakeKubernetes, namespaces: int, per_namespace: int,
                labels: Callable[[int], Mapping[str, str]] | None = None) -> int:
    """``namespaces`` namespaces with ``per_namespace`` objects each, spread over the scanned kinds."""
    kinds = ["deployments", "services", "statefulsets", "jobs", "ingresses",
             "persistentvolumeclaims", "daemonsets", "cronjobs"]
    count = 0
    for n in range(namespaces):
        ns = f"ns-{n:04d}"
        fake.seed("namespaces", ns, labels=labels(n) if labels else {})
        count += 1
        for i in range(per_namespace):
            fake.seed(kinds[i % len(kinds)], f"obj-{i:04d}", ns, labels={"app": f"obj-{i:04d}"})
            count += 1
    return count


def seed_demo_cluster(fake: FakeKubernetes) -> None:
    """A small realistic cluster for ``envlabel demo``: an unlabeled namespace that inherits the cluster's
    environment, a preview namespace labeled staging (a conflict inside a production cluster), a workload
    whose own label disagrees, system namespaces, nodes, and a secret envlabel must never read."""
    fake.seed("nodes", "ip-10-1-0-11", labels={"node.kubernetes.io/instance-type": "m6i.large"})
    fake.seed("nodes", "ip-10-1-0-12", labels={"node.kubernetes.io/instance-type": "m6i.large"})
    fake.seed("namespaces", "kube-system")
    fake.seed("namespaces", "orders", labels={"team": "orders"})
    fake.seed("namespaces", "orders-preview", labels={"team": "orders", "environment": "staging"})
    fake.seed("storageclasses", "gp3", annotations={"storageclass.kubernetes.io/is-default-class": "true"})
    for namespace in ("orders", "orders-preview"):
        for resource in ("deployments", "services", "configmaps", "ingresses"):
            fake.seed(resource, "orders-api", namespace, labels={"app": "orders-api"})
        fake.seed("statefulsets", "orders-db", namespace, labels={"app": "orders-db"}, fields={"spec": {
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}}]}})
        fake.seed("persistentvolumeclaims", "data-orders-db-0", namespace, labels={"app": "orders-db"})
        # the gp3 class deletes a released volume: deleting this claim destroys the orders data
        fake.bind_claim("data-orders-db-0", namespace, "Delete", "gp3", volume=f"pvc-{namespace}-orders-db-0")
        fake.seed("cronjobs", "orders-report", namespace, labels={"app": "orders-report"})
        fake.seed("secrets", "orders-db-password", namespace)
    fake.seed("deployments", "load-generator", "orders", labels={"app": "load-generator", "env": "dev"})
    fake.seed("daemonsets", "node-exporter", "kube-system", labels={"app": "node-exporter"})
