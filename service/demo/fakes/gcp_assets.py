"""A faithful fake of the Cloud Asset Inventory v1 search API, served beside the fake Resource Manager.

The real google-cloud-asset client (``transport="rest"``, anonymous credentials,
``api_endpoint=http://127.0.0.1:PORT``) drives it exactly as it drives
``cloudasset.googleapis.com``: ``GET /v1/{scope}:searchAllResources`` with
``query``, repeated ``assetTypes`` (exact names or RE2-style patterns such as
``compute.googleapis.com.*``), ``pageSize`` (capped at 500, as Google caps it),
``pageToken``/``nextPageToken`` and ``readMask``; results are
``ResourceSearchResult`` JSON (``name``, ``assetType``, ``project`` as
``projects/NUMBER``, ``folders``, ``organization``, ``labels``, ``tags``,
``parentFullResourceName``...). Errors are Google's JSON bodies: 403
PERMISSION_DENIED (the caller lacks ``cloudasset.assets.searchAllResources`` on
the scope, or the scope does not exist), 429 RESOURCE_EXHAUSTED, 400 for a bad
page token or a query the fake does not speak.

It shares the estate, the request log, the grants and the faults of the
:class:`~envlabel.service.demo.fakes.gcp_crm.FakeCrm` it belongs to
(``crm.assets``), so one ``grant_only`` holds a role against every call a scan
makes; :meth:`FakeAssets.fail_after` breaks a later page of a search.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from envlabel.service.demo.fakes.gcp_crm import CREATED, CRM, ApiError, LoggedRequest

if TYPE_CHECKING:
    from envlabel.service.demo.fakes.gcp_crm import FakeCrm

SEARCH_PERMISSION = "cloudasset.assets.searchAllResources"
SERVICE = "cloudasset.googleapis.com"
#: Google's cap on one page of searchAllResources, whatever pageSize asks
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
PROJECT_TYPE = "cloudresourcemanager.googleapis.com/Project"
#: asset types whose resource names use another service host than the type (Cloud SQL: sqladmin -> cloudsql)
NAME_SERVICE = {"sqladmin.googleapis.com": "cloudsql.googleapis.com"}

#: the camelCase JSON field -> whether readMask may name it (the fields the fake fills)
_FIELDS = ("name", "assetType", "project", "folders", "organization", "displayName", "description", "location",
           "labels", "state", "createTime", "updateTime", "parentFullResourceName", "parentAssetType", "tags",
           "versionedResources")
_QUERY_TERM = re.compile(r'^(name|displayName|state|location|labels\.[\w-]+)([:=])"?([^"]*)"?$')


@dataclass
class Asset:
    """One resource below a project, as Cloud Asset Inventory indexes it."""

    name: str  # the full resource name, //SERVICE/...
    asset_type: str
    project: str  # projects/NUMBER
    display_name: str
    location: str = "global"
    labels: dict[str, str] = field(default_factory=dict)
    state: str = ""
    tags: list[str] = field(default_factory=list)  # tagValues/N directly bound
    #: the resource as its own service's v1 API returns it (``versionedResources``); None: Cloud Asset has none
    resource: dict[str, Any] | None = None


class FakeAssets:
    """The assets of one fake organization and the searchAllResources handling. Thread-safe via the CRM's lock."""

    def __init__(self, crm: FakeCrm) -> None:
        self.crm = crm
        self.assets: dict[str, Asset] = {}
        #: [successes left before failing, failures left, status, the asset type searched ("": any)]
        self._page_faults: list[list[Any]] = []

    # -- seeding ------------------------------------------------------------------------------
    def add(self, asset_type: str, project_id: str, path: str, labels: dict[str, str] | None = None, *,
            display_name: str | None = None, location: str = "global", state: str = "",
            tags: Iterable[str] = (), resource: dict[str, Any] | None = None) -> str:
        """Add the asset ``//SERVICE/PATH`` (SERVICE from ``asset_type``) in ``project_id``; returns its name.

        ``path`` may use ``{number}`` for the project's number (Secret Manager names use it). ``resource`` is
        its v1 representation, served as ``versionedResources`` when the read mask asks for it."""
        number = self.crm.project_number(project_id)
        relative = path.format(number=number.split("/")[1])
        service = asset_type.split("/", maxsplit=1)[0]
        name = f"//{NAME_SERVICE.get(service, service)}/{relative}"
        self.assets[name] = Asset(name, asset_type, number, display_name or relative.rsplit("/", 1)[-1], location,
                                  dict(labels or {}), state, list(tags), resource)
        return name

    def instance(self, project_id: str, zone: str, name: str, labels: dict[str, str] | None = None,
                 with_disk: bool = True) -> str:
        """A Compute Engine VM (and its boot disk of the same name, as GCE creates it)."""
        if with_disk:
            self.add("compute.googleapis.com/Disk", project_id, f"projects/{project_id}/zones/{zone}/disks/{name}",
                     labels, location=zone, state="READY")
        return self.add("compute.googleapis.com/Instance", project_id,
                        f"projects/{project_id}/zones/{zone}/instances/{name}", labels, location=zone,
                        state="RUNNING")

    def bucket(self, project_id: str, name: str, labels: dict[str, str] | None = None,
               location: str = "us", *, versioning: bool = False, soft_delete_days: int = 7) -> str:
        """A Cloud Storage bucket: its name carries no project (``projects/_``), its ``project`` field does.
        Its JSON API representation omits ``versioning`` unless it was enabled, and carries the soft delete
        policy (7 days unless set otherwise; 0 turns it off)."""
        resource: dict[str, Any] = {"kind": "storage#bucket", "name": name, "location": location.upper(),
                                    "storageClass": "STANDARD",
                                    "softDeletePolicy": {"retentionDurationSeconds": str(soft_delete_days * 86400)}}
        if versioning:
            resource["versioning"] = {"enabled": True}
        return self.add("storage.googleapis.com/Bucket", project_id, f"projects/_/buckets/{name}", labels,
                        location=location, resource=resource)

    def sql_instance(self, project_id: str, name: str, labels: dict[str, str] | None = None,
                     location: str = "europe-west1", *, deletion_protection: bool = False,
                     backups: bool = True) -> str:
        """A Cloud SQL instance with its Cloud SQL Admin v1 DatabaseInstance representation."""
        resource = {"kind": "sql#instance", "name": name, "project": project_id, "region": location,
                    "databaseVersion": "POSTGRES_16", "state": "RUNNABLE",
                    "settings": {"tier": "db-custom-2-7680", "deletionProtectionEnabled": deletion_protection,
                                 "backupConfiguration": {"enabled": backups, "startTime": "03:00"}}}
        return self.add("sqladmin.googleapis.com/Instance", project_id, f"projects/{project_id}/instances/{name}",
                        labels, location=location, state="RUNNABLE", resource=resource)

    def bind(self, name: str, tag_value: str) -> None:
        """Attach ``tag_value`` (tagValues/N) to the asset ``name``, replacing a value of the same key."""
        asset, value = self.assets[name], self.crm.tags[tag_value]
        asset.tags = [v for v in asset.tags if self.crm.tags[v].parent != value.parent] + [tag_value]

    # -- faults -------------------------------------------------------------------------------
    def fail_after(self, pages: int, status: int = 500, times: int = 1, asset_type: str = "") -> None:
        """Let the next ``pages`` searches (of ``asset_type``, if given) succeed, then answer ``times`` with
        ``status``: a later page of a search breaks."""
        with self.crm.lock:
            self._page_faults.append([pages, times, status, asset_type])

    def clear_faults(self) -> None:
        """Called by :meth:`FakeCrm.clear_faults`, under its lock."""
        self._page_faults.clear()

    # -- requests -----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        params = parse_qs(url.query, keep_blank_values=True)
        single = {k: v[-1] for k, v in params.items()}
        permission, resource = "", ""
        with self.crm.lock:
            try:
                if method != "GET":
                    raise ApiError(501, f"{method} {url.path}: the fake Cloud Asset API serves searches only")
                scope = self._scope(url.path)
                permission, resource = SEARCH_PERMISSION, self.crm.resolve(scope)
                self.crm.check(url.path, permission, resource, SERVICE)
                self._page_fault(params.get("assetTypes", []))
                status, body = 200, self._search(resource, params, single)
            except ApiError as exc:
                status, body = exc.code, exc.body()
            self.crm.requests.append(LoggedRequest(method, url.path, single, permission, resource, status))
        return status, body

    @staticmethod
    def _scope(path: str) -> str:
        match = re.fullmatch(r"/v1/((?:organizations|folders|projects)/[^/:]+):searchAllResources", path)
        if match is None:
            raise ApiError(404, f"The requested URL {path} was not found on this server.")
        return match.group(1)

    def _page_fault(self, asset_types: list[str]) -> None:
        rule = next((r for r in self._page_faults if r[1] > 0 and (not r[3] or r[3] in asset_types)), None)
        if rule is None:
            return
        if rule[0] > 0:
            rule[0] -= 1
            return
        rule[1] -= 1
        raise ApiError(rule[2], "Internal error encountered." if rule[2] == 500 else "The service is unavailable.")

    def _search(self, scope: str, params: dict[str, list[str]], single: dict[str, str]) -> dict[str, Any]:
        types = [t for value in params.get("assetTypes", []) for t in value.split(",") if t]
        terms = [self._term(t) for t in single.get("query", "").split()]
        mask = [f for f in single.get("readMask", "").split(",") if f]
        unknown = [f for f in mask if f not in _FIELDS and f != "*"]
        if unknown:
            raise ApiError(400, f"Invalid field mask path(s) {unknown}: not fields of ResourceSearchResult")
        # the projects in scope once per call, not each asset's ancestry (a benchmark holds 50,000)
        projects = {a.project for a in self.assets.values()}
        in_scope = {p for p in projects if scope in self._ancestors_of(p)}
        found = [a for a in self.assets.values() if a.project in in_scope and self._of_types(a, types)
                 and all(self._matches(a, term) for term in terms)]
        found.sort(key=lambda a: a.name)
        start, size = self._paging(single)
        body: dict[str, Any] = {}
        page = found[start:start + size]
        if page:
            body["results"] = [self._json(a, mask) for a in page]
        if start + size < len(found):
            body["nextPageToken"] = base64.urlsafe_b64encode(f"asset-offset:{start + size}".encode()).decode()
        return body

    @staticmethod
    def _paging(params: dict[str, str]) -> tuple[int, int]:
        raw_size, token = params.get("pageSize", "") or "0", params.get("pageToken", "")
        try:
            size = int(raw_size)
            decoded = base64.urlsafe_b64decode(token.encode()).decode() if token else "asset-offset:0"
            if not decoded.startswith("asset-offset:"):
                raise ValueError(decoded)
            start = int(decoded.removeprefix("asset-offset:"))
        except ValueError:
            raise ApiError(400, f"Invalid page token {token!r} or page size {raw_size!r}.") from None
        return start, min(size if size > 0 else DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)

    @staticmethod
    def _term(text: str) -> tuple[str, str, str]:
        match = _QUERY_TERM.match(text)
        if match is None:
            raise ApiError(400, f"Invalid query {text!r}: the fake speaks FIELD:VALUE and FIELD=VALUE terms of name, "
                           "displayName, state, location and labels.KEY")
        field_name, operator, value = match.groups()
        return field_name, operator, value

    @staticmethod
    def _matches(asset: Asset, term: tuple[str, str, str]) -> bool:
        field_name, operator, value = term
        if field_name.startswith("labels."):
            actual = asset.labels.get(field_name.split(".", 1)[1])
            return actual is not None and value in {"*", actual}
        actual = {"name": asset.name, "displayName": asset.display_name, "state": asset.state,
                  "location": asset.location}[field_name]
        if operator == "=":
            return actual == value
        return value.lower() in re.split(r"[^a-z0-9-]+", actual.lower()) or value.lower() == actual.lower()

    @staticmethod
    def _of_types(asset: Asset, types: list[str]) -> bool:
        return not types or asset.asset_type in types or any(re.fullmatch(t, asset.asset_type) for t in types)

    def _ancestors(self, asset: Asset) -> list[str]:
        return self._ancestors_of(asset.project)

    def _ancestors_of(self, project: str) -> list[str]:
        """The project, then its folders, then the organization."""
        out, node = [], self.crm.nodes.get(project)
        while node is not None:
            out.append(node.name)
            node = self.crm.nodes.get(node.parent) if node.parent else None
        return out

    def _json(self, asset: Asset, mask: list[str]) -> dict[str, Any]:
        ancestors = self._ancestors(asset)
        project = self.crm.nodes[asset.project]
        body: dict[str, Any] = {
            "name": asset.name, "assetType": asset.asset_type, "project": asset.project,
            "folders": [a for a in ancestors if a.startswith("folders/")],
            "organization": next((a for a in ancestors if a.startswith("organizations/")), ""),
            "displayName": asset.display_name, "location": asset.location, "createTime": CREATED,
            "updateTime": CREATED, "parentFullResourceName": f"{CRM}projects/{project.project_id}",
            "parentAssetType": PROJECT_TYPE,
        }
        if asset.labels:
            body["labels"] = dict(asset.labels)
        if asset.state:
            body["state"] = asset.state
        if asset.tags:
            body["tags"] = [self._tag(v) for v in asset.tags]
        # a large field: sent only when the read mask names it (or "*"), as Google sends it
        if asset.resource is not None and ("*" in mask or "versionedResources" in mask):
            body["versionedResources"] = [{"version": "v1", "resource": asset.resource}]
        if mask and "*" not in mask:
            body = {k: v for k, v in body.items() if k in mask}
        return body

    def _tag(self, value_name: str) -> dict[str, str]:
        value = self.crm.tags[value_name]
        key = self.crm.tags[value.parent]
        return {"tagKey": key.namespaced_name, "tagKeyId": key.name, "tagValue": value.namespaced_name,
                "tagValueId": value.name}


#: (what, target, the environment envlabel must derive) below the example projects
EXAMPLE_ASSET_HIGHLIGHTS: tuple[tuple[str, str, str], ...] = (
    ("a VM in the sandbox project ml-playground", "//compute.googleapis.com/projects/ml-playground/zones/"
     "us-central1-a/instances/vm1", "sandbox"),
    ("a VM labeled env: prod in the sandbox project (its own label)", "//compute.googleapis.com/projects/"
     "ml-playground/zones/us-central1-a/instances/trainer", "production"),
    ("a Cloud SQL instance in payments-prod (inherited)", "//cloudsql.googleapis.com/projects/payments-prod/"
     "instances/payments-db", "production"),
)
GKE_CLUSTER = "//container.googleapis.com/projects/payments-prod/locations/europe-west1/clusters/payments-gke"


def seed_example_assets(crm: FakeCrm) -> None:
    """Resources below the example projects: every default asset type, a production-labeled VM in the
    sandbox project, a bucket with no project in its name, a secret named by project number."""
    assets = crm.assets
    assets.instance("payments-prod", "europe-west1-b", "payments-api-1", {"team": "payments"})
    assets.sql_instance("payments-prod", "payments-db", deletion_protection=False, backups=True)
    assets.add("container.googleapis.com/Cluster", "payments-prod",
               "projects/payments-prod/locations/europe-west1/clusters/payments-gke", location="europe-west1",
               state="RUNNING")
    assets.bucket("payments-prod", "payments-exports", {"env": "prod"}, location="eu", versioning=True)
    assets.add("spanner.googleapis.com/Instance", "orders-prod", "projects/orders-prod/instances/orders-spanner",
               {"env": "sandbox"})  # a label that contradicts its production folder: production, conflict
    assets.add("pubsub.googleapis.com/Topic", "orders-prod", "projects/orders-prod/topics/orders-events")
    assets.add("run.googleapis.com/Service", "web-staging", "projects/web-staging/locations/us-central1/services/web",
               location="us-central1")
    assets.add("bigquery.googleapis.com/Dataset", "web-staging", "projects/web-staging/datasets/analytics",
               location="US")
    assets.instance("ml-playground", "us-central1-a", "vm1")
    assets.instance("ml-playground", "us-central1-a", "trainer", {"env": "prod"})
    assets.add("secretmanager.googleapis.com/Secret", "ml-playground", "projects/{number}/secrets/hf-token")
    assets.bucket("shared-logging", "shared-logs-archive")  # no signal at all: unknown, as its project

