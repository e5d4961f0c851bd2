"""A small faithful fake of the Kubernetes API server, over real HTTP on loopback.

No kube-apiserver can run in tests or in ``envlabel demo``, so this speaks the
real REST paths and JSON shapes the official ``kubernetes`` client and
``kubectl apply --validate=false`` use: discovery (``/api``, ``/apis``,
``/version``), list with ``labelSelector``, ``limit``/``continue`` and a list
``resourceVersion``, get/create/update/patch/delete, watch as chunked JSON
lines with bookmarks, and 410 Gone for compacted resource versions and
expired continue tokens. Objects are served complete (the client validates
required fields), or as ``PartialObjectMetadata`` when the client asks for
metadata only. Every request is logged so tests can assert which verbs and
resources a client used. JSON only: kubectl's protobuf requests are not served.

    url, fake = start_fake_cluster()
    fake.seed("namespaces", "payments", labels={"environment": "staging"})
    fake.seed("deployments", "api", "payments")
    write_kubeconfig(path, url)
    ...
    fake.stop()
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    Kind("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Kind("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    Kind("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    Kind("batch", "v1", "jobs", "Job", True),
    Kind("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", True),
)
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
#: what `kubectl get all` lists
_CATEGORY_ALL = frozenset({"services", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"})
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
        "persistentvolumeclaims": {"spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}},
                                   "status": {"phase": "Bound"}},
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


def _metadata_only(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": META_GROUP, "metadata": obj["metadata"]}


class FakeKubernetes:
    """The in-memory API state, a global resourceVersion counter and the event log watches replay."""

    def __init__(self, bookmark_interval: float | None = None) -> None:
        self.kinds: dict[tuple[str, str, str], Kind] = {(k.group, k.version, k.resource): k for k in KINDS}
        self.objects: dict[tuple[str, str, str], dict[tuple[str, str], Obj]] = {key: {} for key in self.kinds}
        self.rv = 1
        self.compacted_rv = 0
        #: (rv, type, kind key, object); events at or below ``compacted_rv`` are dropped
        self.events: list[tuple[int, str, tuple[str, str, str], Obj]] = []
        self.requests: list[RequestRecord] = []
        self.forbidden: set[tuple[str, str]] = set()
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
             annotations: Mapping[str, str] | None = None, group: str | None = None) -> Obj:
        """Create (or replace) a complete object of ``resource``; returns it as served."""
        kind = self.kind(resource, group)
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **skeleton(kind, name),
                "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}}
        if kind.namespaced:
            body["metadata"]["namespace"] = namespace or "default"
        with self.cond:
            key = (body["metadata"].get("namespace", ""), name)
            if key in self.objects[self._key(kind)]:
                return self.update(kind, body["metadata"].get("namespace"), name, body, check_version=False)
            return self.create(kind, body["metadata"].get("namespace"), body)

    def set_labels(self, resource: str, name: str, labels: Mapping[str, str | None], namespace: str | None = None,
                   group: str | None = None) -> Obj:
        """Merge ``labels`` into the object's labels (``None`` removes a key): one MODIFIED event."""
        return self.patch(self.kind(resource, group), namespace, name, {"metadata": {"labels": dict(labels)}})

    def remove(self, resource: str, name: str, namespace: str | None = None, group: str | None = None) -> None:
        self.delete(self.kind(resource, group), namespace, name)

    def forbid(self, resource: str, group: str = "") -> None:
        """Answer 403 for every request on ``resource`` (an RBAC rule the client lacks)."""
        self.forbidden.add((group, resource))

    def compact(self, expire_watches: bool = False) -> int:
        """Forget history: older resourceVersions and continue tokens get 410 Gone. Returns the new floor."""
        with self.cond:
            self.rv += 1  # lists and watches started from here on are valid; older ones are not
            self.compacted_rv = self.rv
            self.events.clear()
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
        """Events of ``kind`` after ``since`` (caller holds ``cond``). Raises 410 when history is gone."""
        if since < self.compacted_rv or self.expired != expired_at:
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


# -- HTTP ------------------------------------------------------------------------------------------
def _group_versions(fake: FakeKubernetes) -> dict[str, list[Kind]]:
    grouped: dict[str, list[Kind]] = {}
    for kind in fake.kinds.values():
        grouped.setdefault(kind.api_version, []).append(kind)
    return grouped


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # without it every small response waits ~40 ms for the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is fake.requests

    @property
    def fake(self) -> FakeKubernetes:
        return self.server.fake

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        try:
            return json.loads(self.raw_body or b"{}")
        except json.JSONDecodeError:
            raise ApiError(415, "UnsupportedMediaType", "the fake serves JSON only (kubectl: use apply -f with "
                           "--validate=false, not create namespace, which sends protobuf)") from None

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        # read every body (a DELETE carries DeleteOptions): what is left unread would corrupt the kept-alive connection
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            discovery = self._discovery(url.path)
            if discovery is not None:
                self.fake.requests.append(RequestRecord(method, url.path, "get", query=query))
                self._send(200, discovery)
                return
            self._resource(method, url.path, query)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _discovery(self, path: str) -> Obj | None:
        path = path.rstrip("/")
        grouped = _group_versions(self.fake)
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-envlabel-fake", "gitCommit": "0" * 40,
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv in grouped:
                if "/" in gv:
                    groups.setdefault(gv.split("/")[0], []).append(gv)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": gv, "version": gv.split("/")[1]} for gv in gvs],
                 "preferredVersion": {"groupVersion": gvs[0], "version": gvs[0].split("/")[1]}}
                for g, gvs in sorted(groups.items())]}
        gv = path.removeprefix("/apis/") if path.startswith("/apis/") else path.removeprefix("/api/")
        if path.startswith(("/api/", "/apis/")) and gv in grouped:
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": k.resource, "singularName": k.kind.lower(), "namespaced": k.namespaced, "kind": k.kind,
                 "verbs": VERBS, **({"shortNames": list(k.short_names)} if k.short_names else {}),
                 **({"categories": ["all"]} if k.resource in _CATEGORY_ALL else {})}
                for k in grouped[gv]]}
        return None

    def _route(self, path: str) -> tuple[Kind, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        kind = self.fake.kinds.get((group, version, rest[0]))
        if kind is None or (namespace is not None and not kind.namespaced):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return kind, namespace, rest[1] if len(rest) > 1 else None

    def _resource(self, method: str, path: str, query: dict[str, str]) -> None:
        kind, namespace, name = self._route(path)
        watching = query.get("watch") in ("1", "true")
        verbs = {"GET": "get" if name else ("watch" if watching else "list"), "POST": "create", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}
        verb = verbs[method]
        self.fake.requests.append(RequestRecord(method, path, verb, kind.group, kind.resource, namespace, name, query))
        if (kind.group, kind.resource) in self.fake.forbidden:
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            raise ApiError(403, "Forbidden", f'{kind.resource}{"." + kind.group if kind.group else ""} is forbidden: '
                           f'User "system:serviceaccount:envlabel:envlabel" cannot {verb} resource "{kind.resource}" '
                           f'in API group "{kind.group}" {scope}')
        metadata_only = "as=PartialObjectMetadata" in (self.headers.get("Accept") or "")
        if verb == "watch":
            self._watch(kind, namespace, query, metadata_only)
        elif verb == "list":
            body = self.fake.list_objects(kind, namespace, query.get("labelSelector", ""), int(query.get("limit") or 0),
                                  query.get("continue", ""))
            if metadata_only:
                body.update(kind="PartialObjectMetadataList", apiVersion=META_GROUP,
                            items=[_metadata_only(i) for i in body["items"]])
            self._send(200, body)
        elif verb == "get":
            assert name is not None
            with self.fake.cond:
                obj = copy.deepcopy(self.fake.find(kind, namespace, name))
            self._send(200, _metadata_only(obj) if metadata_only else obj)
        elif verb == "create":
            self._send(201, self.fake.create(kind, namespace, self._body()))
        elif verb == "update":
            assert name is not None
            self._send(200, self.fake.update(kind, namespace, name, self._body()))
        elif verb == "patch":
            assert name is not None
            self._send(200, self.fake.patch(kind, namespace, name, self._body()))
        elif verb == "delete":
            assert name is not None
            self._send(200, self.fake.delete(kind, namespace, name))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not served by the fake")

    def _watch(self, kind: Kind, namespace: str | None, query: dict[str, str], metadata_only: bool) -> None:
        fake = self.fake
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        selector = query.get("labelSelector", "")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        interval = fake.bookmark_interval
        next_bookmark = time.monotonic() + interval if interval else float("inf")
        shape: Callable[[Obj], Obj] = _metadata_only if metadata_only else (lambda o: o)
        with fake.cond:
            expired_at, bookmark_seen = fake.expired, fake.bookmarks
            since_text = query.get("resourceVersion", "")
            initial: list[Obj] = []
            if since_text in ("", "0"):  # "any version": the current state as ADDED, then changes
                listed = fake.list_objects(kind, namespace, selector)
                initial = [{"apiVersion": kind.api_version, "kind": kind.kind, **o} for o in listed["items"]]
                since = fake.rv
            else:
                since = int(since_text) if since_text.isdigit() else -1
        try:
            for obj in initial:
                self._chunk({"type": "ADDED", "object": shape(obj)})
            while time.monotonic() < deadline:
                with fake.cond:
                    error: ApiError | None = None
                    try:
                        events, head = fake.watch_events(kind, namespace, since, selector, expired_at)
                    except ApiError as exc:
                        events, head, error = [], since, exc
                    wanted = bookmarks and (bookmark_seen != fake.bookmarks or time.monotonic() >= next_bookmark)
                    bookmark_seen = fake.bookmarks
                    stopping = fake.stopping
                    idle = not events and error is None and not wanted and not stopping
                    if idle:
                        fake.cond.wait(max(0.0, min(0.5, next_bookmark - time.monotonic(),
                                                    deadline - time.monotonic())))
                if error is not None:
                    self._chunk({"type": "ERROR", "object": error.status()})
                    break
                for _, event_type, obj in events:
                    self._chunk({"type": event_type, "object": shape(obj)})
                since = head  # every event of this kind up to head has been sent
                if wanted:
                    next_bookmark = time.monotonic() + interval if interval else float("inf")
                    self._chunk({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version,
                                                                "metadata": {"resourceVersion": str(since)}}})
                if stopping or (idle and self._client_gone()):
                    break
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away
        self.close_connection = True

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeKubernetes) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


def start_fake_cluster(host: str = "127.0.0.1", port: int = 0,
                       bookmark_interval: float | None = None) -> tuple[str, FakeKubernetes]:
    """Serve a new fake cluster on ``host:port`` (0 = a free port) from a background thread."""
    fake = FakeKubernetes(bookmark_interval)
    server = _Server((host, port), fake)
    fake.server = server
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-kubernetes", daemon=True)
    thread.start()
    fake.seed("namespaces", "default")
    return f"http://{host}:{server.server_address[1]}", fake


def write_kubeconfig(path: str | Path, url: str, context: str = "fake",
                     token: str = "fake-token") -> Path:  # noqa: S107 - the fake accepts any token
    """A kubeconfig whose ``context`` points at ``url`` with a bearer token."""
    path = Path(path)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
    }, indent=2))
    return path


def seed_estate(fake: FakeKubernetes, namespaces: int, per_namespace: int,
                labels: Callable[[int], Mapping[str, str]] | None = None) -> int:
    """``namespaces`` namespaces with ``per_namespace`` objects each, spread over the scanned kinds."""
    kinds = ["deployments", "services", "configmaps", "statefulsets", "jobs", "ingresses",
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
    for namespace in ("orders", "orders-preview"):
        for resource in ("deployments", "services", "configmaps", "ingresses"):
            fake.seed(resource, "orders-api", namespace, labels={"app": "orders-api"})
        fake.seed("statefulsets", "orders-db", namespace, labels={"app": "orders-db"})
        fake.seed("persistentvolumeclaims", "data-orders-db-0", namespace, labels={"app": "orders-db"})
        fake.seed("cronjobs", "orders-report", namespace, labels={"app": "orders-report"})
        fake.seed("secrets", "orders-db-password", namespace)
    fake.seed("deployments", "load-generator", "orders", labels={"app": "load-generator", "env": "dev"})
    fake.seed("daemonsets", "node-exporter", "kube-system", labels={"app": "node-exporter"})


def main(argv: list[str] | None = None) -> int:
    """Serve a seeded fake cluster until interrupted; prints its URL on the first line of stdout.

        python -m service.fakes.kubernetes_api --namespaces 500 --per-namespace 100
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--namespaces", type=int, default=0)
    parser.add_argument("--per-namespace", type=int, default=0)
    parser.add_argument("--kubeconfig", help="also write a kubeconfig pointing at the fake here")
    parser.add_argument("--demo", action="store_true", help="seed the demo cluster (seed_demo_cluster)")
    args = parser.parse_args(argv)
    url, fake = start_fake_cluster(port=args.port)
    seed_estate(fake, args.namespaces, args.per_namespace)
    if args.demo:
        seed_demo_cluster(fake)
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, url)
    print(url, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
