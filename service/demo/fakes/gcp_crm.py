"""A faithful fake of the Cloud Resource Manager v3 REST API, served on loopback.

There is no local Resource Manager, so tests and ``envlabel demo`` drive the
real google-cloud-resource-manager client (``transport="rest"``, anonymous
credentials, ``api_endpoint=http://127.0.0.1:PORT``) against this. It speaks
the read paths that client uses (``/v3/organizations/N``, ``/v3/folders``,
``/v3/projects``, ``/v3/projects:search``, ``/v3/tagKeys``, ``/v3/tagValues``,
``/v3/tagBindings``, ``/v3/effectiveTags``) with the JSON field names, paging
(``pageSize``/``pageToken``/``nextPageToken``), ``showDeleted`` and the error
bodies (``{"error": {"code", "message", "status", "details"}}``) Google sends,
including Google's habit of answering 403 for a resource that does not exist.
The same server answers the Cloud Asset API's ``/v1/{scope}:searchAllResources``
for the resources below the projects (:mod:`.gcp_assets`, ``FakeCrm.assets``).

Every route knows the IAM permission Google checks for it, so a test can hold
a scanner's declared permissions against what it actually called
(:attr:`FakeCrm.requests`) or serve with only a role's permissions granted.
Faults for tests: :meth:`FakeCrm.throttle` (429 RESOURCE_EXHAUSTED for the
next N calls), :meth:`FakeCrm.deny` (403 on one resource) and
:meth:`FakeCrm.break_resource` (500 on one resource). Read-only: writes
answer 501.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

if TYPE_CHECKING:
    from envlabel.service.demo.fakes.gcp_assets import FakeAssets

CRM = "//cloudresourcemanager.googleapis.com/"
CREATED = "2024-01-15T10:00:00.000Z"
DEFAULT_PAGE_SIZE = 100

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}

_FAULT_MESSAGES = {401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                        "or other valid authentication credential.",
                   503: "The service is currently unavailable."}


class ApiError(Exception):
    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message,
                                 "status": _STATUS.get(self.code, "UNKNOWN")}
        if self.details:
            error["details"] = self.details
        return {"error": error}


@dataclass
class Node:
    """An organization, folder or project. ``name`` is organizations/N, folders/N or projects/NUMBER."""

    name: str
    parent: str | None
    display_name: str
    project_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "ACTIVE"
    bindings: list[str] = field(default_factory=list)  # tagValues/N, in binding order


@dataclass
class Tag:
    """A TagKey (parent organizations/N or projects/N) or a TagValue (parent tagKeys/N)."""

    name: str
    parent: str
    short_name: str
    namespaced_name: str
    description: str = ""


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    params: dict[str, str]
    #: the IAM permission Google checks for this call ("" for an unknown route)
    permission: str
    #: the resource the permission is checked on
    resource: str
    status: int


def _etag(*parts: str) -> str:
    return "W/\"" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] + "\""


class FakeCrm:
    """The estate and the request handling, independent of HTTP. Thread-safe."""

    def __init__(self, max_page_size: int = 300) -> None:
        #: the most items one page holds whatever pageSize asks (Google caps tag lists at 300)
        self.max_page_size = max_page_size
        self.nodes: dict[str, Node] = {}
        self.tags: dict[str, Tag] = {}
        self.requests: list[LoggedRequest] = []
        #: None: every permission granted; else only these
        self.granted: frozenset[str] | None = None
        #: seconds each reply is held back, as a network round trip would (benchmarks; tests leave it 0)
        self.latency_s = 0.0
        self._denied: dict[str, str | None] = {}
        self._broken: dict[str, int] = {}
        self._throttles: list[list[Any]] = []  # [calls left, path substring, status]
        #: one lock for the estate and the request log, shared with :attr:`assets`
        self.lock = threading.Lock()
        self._serial = 0
        from envlabel.service.demo.fakes.gcp_assets import FakeAssets

        #: the Cloud Asset API's view of the resources below these projects (``/v1/...:searchAllResources``)
        self.assets: FakeAssets = FakeAssets(self)

    # -- seeding ------------------------------------------------------------------------------
    def _next(self, base: int) -> str:
        self._serial += 1
        return str(base + self._serial)

    def add_organization(self, org_id: str, display_name: str) -> str:
        name = f"organizations/{org_id}"
        self.nodes[name] = Node(name, None, display_name)
        return name

    def add_folder(self, parent: str, display_name: str, state: str = "ACTIVE") -> str:
        name = f"folders/{self._next(100_000_000_000)}"
        self.nodes[name] = Node(name, self._node(parent).name, display_name, state=state)
        return name

    def add_project(self, parent: str, project_id: str, display_name: str | None = None,
                    labels: dict[str, str] | None = None, state: str = "ACTIVE") -> str:
        """Add a project; returns its name, ``projects/NUMBER``."""
        name = f"projects/{self._next(400_000_000_000)}"
        self.nodes[name] = Node(name, self._node(parent).name, display_name or project_id, project_id,
                                dict(labels or {}), state)
        return name

    def add_tag_key(self, parent: str, short_name: str, description: str = "") -> str:
        owner = self._node(parent)
        namespace = owner.project_id or owner.name.split("/")[1]
        name = f"tagKeys/{self._next(281_400_000_000_000)}"
        self.tags[name] = Tag(name, owner.name, short_name, f"{namespace}/{short_name}", description)
        return name

    def add_tag_value(self, tag_key: str, short_name: str, description: str = "") -> str:
        key = self.tags[tag_key]
        name = f"tagValues/{self._next(281_500_000_000_000)}"
        self.tags[name] = Tag(name, key.name, short_name, f"{key.namespaced_name}/{short_name}", description)
        return name

    def bind(self, resource: str, tag_value: str) -> None:
        """Attach ``tag_value`` to an organization, folder or project (by ID or number)."""
        node, value = self._node(resource), self.tags[tag_value]
        node.bindings = [v for v in node.bindings if self.tags[v].parent != value.parent] + [value.name]

    def folder_named(self, display_name: str) -> str:
        """The folders/N called ``display_name``."""
        return next(n.name for n in self.nodes.values() if n.display_name == display_name
                    and n.name.startswith("folders/"))

    def project_number(self, project_id: str) -> str:
        """The projects/NUMBER of ``project_id``."""
        return self._node(f"projects/{project_id}").name

    def tag_value(self, namespaced_name: str) -> str:
        """The tagValues/N whose namespaced name is ``ORG/key/value``."""
        return next(t.name for t in self.tags.values() if t.namespaced_name == namespaced_name
                    and t.name.startswith("tagValues/"))

    # -- faults -------------------------------------------------------------------------------
    def throttle(self, times: int, path_contains: str = "", status: int = 429) -> None:
        """Answer the next ``times`` calls (whose path contains ``path_contains``) with a rate-limit error:
        429 RESOURCE_EXHAUSTED, or the 403 rateLimitExceeded some Google APIs send. Rules add up."""
        with self.lock:
            self._throttles.append([times, path_contains, status])

    def deny(self, resource: str, permission: str | None = None) -> None:
        """403 for calls checked on ``resource`` (only those needing ``permission``, if given)."""
        self._denied[self._node(resource).name] = permission

    def break_resource(self, resource: str, status: int = 500) -> None:
        self._broken[self._node(resource).name] = status

    def clear_faults(self) -> None:
        """Lift every throttle, denial and breakage (of the Cloud Asset searches too): the estate recovers."""
        with self.lock:
            self._throttles.clear()
            self._denied.clear()
            self._broken.clear()
            self.assets.clear_faults()

    def grant_only(self, permissions: Iterable[str] | None) -> None:
        self.granted = None if permissions is None else frozenset(permissions)

    # -- requests -----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        if url.path.startswith("/v1/"):
            return self.assets.handle(method, raw_path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        permission, resource = "", ""
        with self.lock:
            try:
                if method != "GET":
                    raise ApiError(501, f"{method} {url.path}: the fake Resource Manager is read-only")
                route, permission, resource = self._route(url.path, params)
                self.check(url.path, permission, resource)
                status, body = 200, route()
            except ApiError as exc:
                status, body = exc.code, exc.body()
            self.requests.append(LoggedRequest(method, url.path, params, permission, resource, status))
        return status, body

    def check(self, path: str, permission: str, resource: str,
              service: str = "cloudresourcemanager.googleapis.com") -> None:
        """Raise the ApiError Google would answer a call of ``service`` needing ``permission`` on ``resource``."""
        rule = next((r for r in self._throttles if r[0] > 0 and r[1] in path), None)
        if rule is not None:
            rule[0] -= 1
            raise ApiError(rule[2], "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
                           f"minute' of service '{service}'.", [{
                               "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                               "domain": "googleapis.com",
                               "metadata": {"service": service}}])
        if resource in self._broken:
            status = self._broken[resource]
            raise ApiError(status, _FAULT_MESSAGES.get(status, "Internal error encountered."))
        denied = resource in self._denied and self._denied[resource] in (None, permission)
        missing = bool(resource) and resource not in self.nodes and resource not in self.tags
        if denied or missing or (self.granted is not None and permission not in self.granted):
            full = CRM + resource if not resource.startswith("tag") else resource
            raise ApiError(403, f"Permission '{permission}' denied on resource '{full}' (or it may not exist).", [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                "domain": service,
                "metadata": {"permission": permission, "resource": resource}}])

    def _route(self, path: str, params: dict[str, str]) -> tuple[Callable[[], dict[str, Any]], str, str]:
        """(handler, the permission Google checks, the resource it checks it on)."""
        parts = path.removeprefix("/v3/").split("/")
        collection = parts[0]
        if len(parts) == 2 and parts[1] != "namespaced":
            name = f"{collection}/{parts[1]}"
            getters = {"organizations": "resourcemanager.organizations.get", "folders": "resourcemanager.folders.get",
                       "projects": "resourcemanager.projects.get", "tagKeys": "resourcemanager.tagKeys.get",
                       "tagValues": "resourcemanager.tagValues.get"}
            if collection in getters:
                target = self.resolve(name)
                return (lambda: self._json(target)), getters[collection], target
        if len(parts) == 2 and collection in ("tagKeys", "tagValues"):
            wanted = self._param(params, "name")
            found = next((t.name for t in self.tags.values() if t.namespaced_name == wanted
                          and t.name.startswith(collection)), f"{collection}/-")
            return (lambda: self._json(found)), f"resourcemanager.{collection}.get", found
        if len(parts) == 1:
            listers: dict[str, tuple[str, str, Callable[[str], list[dict[str, Any]]]]] = {
                "folders": ("folders", "resourcemanager.folders.list", lambda p: self._children(p, "folders/", params)),
                "projects": ("projects", "resourcemanager.projects.list",
                             lambda p: self._children(p, "projects/", params)),
                "tagKeys": ("tagKeys", "resourcemanager.tagKeys.list", lambda p: self._tags_under(p, "tagKeys/")),
                "tagValues": ("tagValues", "resourcemanager.tagValues.list",
                              lambda p: self._tags_under(p, "tagValues/")),
                "tagBindings": ("tagBindings", "resourcemanager.hierarchyNodes.listTagBindings", self._bindings),
                "effectiveTags": ("effectiveTags", "resourcemanager.hierarchyNodes.listEffectiveTags",
                                  self._effective_tags),
            }
            if collection in listers:
                field_name, permission, lister = listers[collection]
                parent = self.resolve(self._param(params, "parent").removeprefix(CRM))
                return (lambda: self._page(field_name, lister(parent), params)), permission, parent
        if collection == "projects:search":
            return (lambda: self._page("projects", self._search(params.get("query", "")), params)), \
                "resourcemanager.projects.get", ""
        raise ApiError(404, f"The requested URL {path} was not found on this server.")

    @staticmethod
    def _param(params: dict[str, str], name: str) -> str:
        if not params.get(name):
            raise ApiError(400, f"field [{name}] is required")
        return params[name]

    def _node(self, name: str) -> Node:
        resolved = self.resolve(name.removeprefix(CRM))
        if resolved not in self.nodes:
            raise KeyError(f"no organization, folder or project {name!r} in the fake")
        return self.nodes[resolved]

    def resolve(self, name: str) -> str:
        """projects/ID -> projects/NUMBER; anything else unchanged."""
        if name.startswith("projects/") and name not in self.nodes:
            pid = name.split("/", 1)[1]
            return next((n.name for n in self.nodes.values() if n.project_id == pid), name)
        return name

    # -- bodies -------------------------------------------------------------------------------
    def _json(self, name: str) -> dict[str, Any]:
        if name in self.tags:
            tag = self.tags[name]
            return {"name": tag.name, "parent": tag.parent, "shortName": tag.short_name,
                    "namespacedName": tag.namespaced_name, "description": tag.description,
                    "createTime": CREATED, "updateTime": CREATED, "etag": _etag(tag.name, tag.short_name)}
        node = self.nodes[name]
        body: dict[str, Any] = {"name": node.name, "displayName": node.display_name, "state": node.state,
                                "createTime": CREATED, "updateTime": CREATED,
                                "etag": _etag(node.name, node.display_name, json.dumps(node.labels))}
        if node.name.startswith("organizations/"):
            body["directoryCustomerId"] = "C0" + node.name.split("/")[1][-7:]
            return body
        body["parent"] = node.parent
        if node.state == "DELETE_REQUESTED":
            body["deleteTime"] = CREATED
        if node.name.startswith("projects/"):
            body["projectId"] = node.project_id
            if node.labels:
                body["labels"] = dict(node.labels)
        return body

    def _children(self, parent: str, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
        if not parent.startswith(("folders/", "organizations/")):
            raise ApiError(400, f"parent must be folders/N or organizations/N, not {parent!r}")
        show_deleted = params.get("showDeleted", params.get("show_deleted", "")).lower() == "true"
        return [self._json(n.name) for n in self.nodes.values() if n.parent == parent and n.name.startswith(kind)
                and (n.state == "ACTIVE" or show_deleted)]

    def _search(self, query: str) -> list[dict[str, Any]]:
        """projects:search with an empty query or ``parent:folders/N`` / ``parent.id:N`` terms."""
        wanted = {t.split(":", 1)[1] for t in query.split() if t.startswith(("parent:", "parent.id:"))}
        return [self._json(n.name) for n in self.nodes.values() if n.name.startswith("projects/")
                and n.state == "ACTIVE" and (not wanted or {n.parent, (n.parent or "").split("/")[-1]} & wanted)]

    def _tags_under(self, parent: str, kind: str) -> list[dict[str, Any]]:
        return [self._json(t.name) for t in self.tags.values() if t.parent == parent and t.name.startswith(kind)]

    def _bindings(self, resource: str) -> list[dict[str, Any]]:
        full = CRM + resource
        return [{"name": f"tagBindings/{quote(full, safe='')}/{value}", "parent": full, "tagValue": value,
                 "tagValueNamespacedName": self.tags[value].namespaced_name}
                for value in self.nodes[resource].bindings]

    def _effective_tags(self, resource: str) -> list[dict[str, Any]]:
        """Own bindings, then each ancestor's, nearest first; a nearer binding of a key hides farther ones."""
        out: list[dict[str, Any]] = []
        keys: set[str] = set()
        node: Node | None = self.nodes[resource]
        inherited = False
        while node is not None:
            for value_name in node.bindings:
                value = self.tags[value_name]
                key = self.tags[value.parent]
                if key.name in keys:
                    continue
                keys.add(key.name)
                tag: dict[str, Any] = {"tagValue": value.name, "namespacedTagValue": value.namespaced_name,
                                       "tagKey": key.name, "namespacedTagKey": key.namespaced_name,
                                       "tagKeyParentName": key.parent}
                if inherited:  # proto3 JSON leaves a false bool out, as Google does
                    tag["inherited"] = True
                out.append(tag)
            node = self.nodes.get(node.parent) if node.parent else None
            inherited = True
        return out

    def _page(self, field_name: str, items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        raw_size = params.get("pageSize", params.get("page_size", "")) or "0"
        token = params.get("pageToken", params.get("page_token", ""))
        try:
            size = int(raw_size)
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:")) if token else 0
        except ValueError:
            raise ApiError(400, f"invalid pageSize {raw_size!r} or pageToken {token!r}") from None
        if size < 0:
            raise ApiError(400, "pageSize must not be negative")
        size = min(size or DEFAULT_PAGE_SIZE, self.max_page_size)
        body: dict[str, Any] = {}
        if items[start:start + size]:
            body[field_name] = items[start:start + size]
        if start + size < len(items):
            body["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
        return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeGcpServer

    def setup(self) -> None:
        super().setup()
        # small JSON replies on a keep-alive connection: don't let Nagle hold them back
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.server.crm.latency_s:
            time.sleep(self.server.crm.latency_s)
        status, body = self.server.crm.handle(self.command, self.path)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is :attr:`FakeCrm.requests`."""


class FakeGcpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, crm: FakeCrm, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.crm = crm
        # a short poll interval makes stop() prompt (shutdown waits for the loop's next poll)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="fake-gcp-crm", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


def start_fake_gcp(crm: FakeCrm | None = None, host: str = "127.0.0.1", port: int = 0) -> tuple[str, FakeGcpServer]:
    """Serve ``crm`` (default: :func:`seed_example`) in a background thread. Stop it with ``server.stop()``."""
    server = FakeGcpServer(crm if crm is not None else seed_example(), host, port)
    server.start()
    return server.url, server


ORG_ID = "123456789012"

#: (what, target, the environment envlabel must derive) for the example estate: the demo's highlights
EXAMPLE_HIGHLIGHTS: tuple[tuple[str, str, str], ...] = (
    ("a project labeled env: dev in the Production folder (conflict)", "projects/orders-prod", "production"),
    ("a project in Production/Payments, inherited from the folder tag", "projects/payments-prod", "production"),
    ("a project tagged with Google's environment tag: Development", "projects/ml-playground", "sandbox"),
    ("a project with no signal at all (fails closed)", "projects/shared-logging", "unknown"),
)


def seed_example(crm: FakeCrm | None = None) -> FakeCrm:
    """A small estate with every case envlabel cares about, used by the demo and the tests.

    Google's designated environment tag is a tag key named ``environment`` on the
    organization (namespaced ``ORG_ID/environment``) with the values Production,
    Staging, Test and Development.
    """
    crm = crm if crm is not None else FakeCrm()
    org = crm.add_organization(ORG_ID, "example.com")
    env_key = crm.add_tag_key(org, "environment", "Google's designated environment tag")
    env = {v: crm.add_tag_value(env_key, v) for v in ("Production", "Staging", "Test", "Development")}
    team_key = crm.add_tag_key(org, "team")
    payments = crm.add_tag_value(team_key, "payments")
    prod = crm.add_folder(org, "Production")
    crm.bind(prod, env["Production"])
    prod_payments = crm.add_folder(prod, "Payments")
    crm.bind(prod_payments, payments)
    staging = crm.add_folder(org, "Staging")
    crm.bind(staging, env["Staging"])
    sandbox = crm.add_folder(org, "Sandbox")
    shared = crm.add_folder(org, "Shared")
    crm.add_project(prod_payments, "payments-prod", "Payments", {"env": "prod", "team": "payments"})
    crm.add_project(prod, "orders-prod", "Orders", {"env": "dev"})  # a label that disagrees with its folder
    crm.add_project(staging, "web-staging", "Web (staging)", {"environment": "staging"})
    sbx = crm.add_project(sandbox, "ml-playground", "ML playground")
    crm.bind(sbx, env["Development"])
    crm.add_project(shared, "shared-logging", "Shared logging")  # no signal at all: unknown, fail closed
    crm.add_project(sandbox, "old-experiment", "Old experiment", state="DELETE_REQUESTED")
    from envlabel.service.demo.fakes.gcp_assets import seed_example_assets

    seed_example_assets(crm)
    return crm


def main() -> None:
    """``python -m envlabel.service.demo.fakes.gcp_crm [--port N]``: serve the example estate until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    url, server = start_fake_gcp(host=args.host, port=args.port)
    print(f"fake Cloud Resource Manager for organizations/{ORG_ID} at {url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
