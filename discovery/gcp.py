"""GCP discovery: one organization, its folders (recursively), projects and the resources in them.

Get -> transform -> return, through the real google-cloud-resource-manager and
google-cloud-asset clients (REST transport). What it records, and why:

- the organization (``gcp:organization``), every folder (``gcp:folder``, its
  display name counts like an AWS OU name: a folder called "Production"
  declares production) and every project (``gcp:project``, id
  ``//cloudresourcemanager.googleapis.com/projects/PROJECT_ID`` with the
  ``projects/NUMBER`` form as an alias, so agents may pass either).
- ``tags``: a project's labels, then the tags bound to the node itself, as
  ``tag key short name -> tag value short name`` (``environment: Production``).
  A tag binding replaces a label of the same key: tags are IAM-governed
  (tagUser on the value), labels are free-form metadata. Inherited tags are
  not copied down: the labeler inherits them from the folder or organization
  that carries them, so a project tag that disagrees with its folder is a
  conflict reported on the project, and the evidence names the node and key.
  Containers' bindings come from ``tagBindings.list``; projects use
  ``effectiveTags.list`` (``inherited: false`` entries are the project's own).
- every resource of the source's ``asset_types`` below the projects, from Cloud
  Asset Inventory's ``searchAllResources`` on the organization (one paged search
  per asset type, 500 a page): id = the full resource name
  (``//compute.googleapis.com/projects/P/zones/Z/instances/I``), kind = the asset
  type's short form (``compute.Instance`` from ``compute.googleapis.com/Instance``),
  parent = its project's id, tags = its labels, then the tags bound to it
  directly, as for a project. A GKE cluster is one of them, so a kubernetes
  source whose ``parent`` is the cluster's full name inherits its project.
- scopes are the containers listed (``organizations/N``, ``folders/N``) and, when
  every asset search completed, each project's assets (``projects/PROJECT_ID``);
  a container whose listing or whose children's tags failed is left out of
  ``ScanResult.scopes``, so only its part of the estate ages towards stale.

Partial is not empty: a call that fails (after retrying 429/503 and rate-limit
403s with backoff) becomes a :class:`ScanError` naming the resource and the IAM
permission; a node whose tags could not be read is not recorded and its subtree
is not walked (its children's labels depend on it), an asset search that fails
on any page records none of that type and no project's asset scope, and the
incomplete scan removes nothing.

:func:`lookup_gcp_asset` is the one bounded search by name the check makes for a
resource no scan has seen.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from envlabel.config import GcpSource
from envlabel.model import Resource, ScanError, ScanResult
from envlabel.targets import GCP_CRM

PROVIDER = "gcp"

#: client call -> the IAM permission it needs (Google checks it on the resource named in the call)
PERMISSION_OF: Mapping[str, str] = {
    "get_organization": "resourcemanager.organizations.get",
    "list_folders": "resourcemanager.folders.list",
    "list_projects": "resourcemanager.projects.list",
    "list_tag_bindings": "resourcemanager.hierarchyNodes.listTagBindings",
    "list_effective_tags": "resourcemanager.hierarchyNodes.listEffectiveTags",
    "get_tag_key": "resourcemanager.tagKeys.get",
    "get_tag_value": "resourcemanager.tagValues.get",
    "search_all_resources": "cloudasset.assets.searchAllResources",
}
#: every permission the scanner uses; discovery/gcp-role.yaml grants exactly these
PERMISSIONS: tuple[str, ...] = tuple(sorted(set(PERMISSION_OF.values())))

#: the ResourceSearchResult fields a scan reads (a smaller reply than the default mask's)
ASSET_FIELDS = ("name", "asset_type", "project", "display_name", "location", "labels", "tags",
                "parent_full_resource_name")
#: asset types whose recovery facts a scan reads from the search result's ``versionedResources`` (the resource as
#: its own service's v1 API returns it: Cloud SQL Admin's DatabaseInstance, Cloud Storage's JSON API Bucket).
#: Asked for these types only: the field is large and not in the default mask. Where Cloud Asset returns no
#: versioned resource, the facts stay unknown (missing), never read as recoverable. ``additionalAttributes`` are not
#: read: Google documents them as searchable text that must not be consumed programmatically
FACT_ASSET_TYPES = frozenset({"sqladmin.googleapis.com/Instance", "storage.googleapis.com/Bucket"})
#: Google's cap on one page of searchAllResources
ASSET_PAGE_SIZE = 500
_PROJECT_NUMBER_IN_NAME = re.compile(r"^//[^/]+/projects/(\d+)(?:/|$)")
_PROJECT_IN_NAME = re.compile(r"^//[^/]+/projects/([a-z][a-z0-9-]{4,28}[a-z0-9])(?:/|$)")

#: ErrorInfo reasons of a 403 that is a rate limit, not a refusal (older Google APIs answer 403 for these)
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")
_RATE_LIMIT_REASONS = frozenset({"RATE_LIMIT_EXCEEDED", "rateLimitExceeded", "userRateLimitExceeded"})


def is_retryable(exc: BaseException) -> bool:
    """429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE and rate-limit 403s are worth another try; nothing else is."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.TooManyRequests | exceptions.ServiceUnavailable):
        return True
    return isinstance(exc, exceptions.Forbidden) and getattr(exc, "reason", None) in _RATE_LIMIT_REASONS


def default_retry(deadline_s: float = 120.0, initial_s: float = 1.0, maximum_s: float = 32.0) -> Any:
    """Exponential backoff (with Google's jitter) on :func:`is_retryable` errors, giving up after ``deadline_s``."""
    from google.api_core.retry import Retry

    return Retry(predicate=is_retryable, initial=initial_s, maximum=maximum_s, multiplier=2.0, timeout=deadline_s)


@dataclass(frozen=True)
class Clients:
    """The Resource Manager clients a scan uses; inject them to point a scanner anywhere."""

    organizations: Any
    folders: Any
    projects: Any
    tag_bindings: Any
    tag_keys: Any
    tag_values: Any
    #: the Cloud Asset Inventory client (None: assets are not searched)
    assets: Any = None


def make_clients(source: GcpSource) -> Clients:
    """REST clients; an ``http://`` api_endpoint (a local fake) is used with anonymous credentials."""
    from google.cloud import asset_v1
    from google.cloud import resourcemanager_v3 as rm

    kwargs: dict[str, Any] = {"transport": "rest"}
    if source.api_endpoint:
        kwargs["client_options"] = {"api_endpoint": source.api_endpoint}
        if source.api_endpoint.startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return Clients(rm.OrganizationsClient(**kwargs), rm.FoldersClient(**kwargs), rm.ProjectsClient(**kwargs),
                   rm.TagBindingsClient(**kwargs), rm.TagKeysClient(**kwargs), rm.TagValuesClient(**kwargs),
                   asset_v1.AssetServiceClient(**kwargs))


def _call_errors() -> tuple[type[BaseException], ...]:
    """What a failed call raises: an API error, a refused or unrefreshable credential, a broken connection."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from requests import RequestException

    return (GoogleAPIError, GoogleAuthError, RequestException)


class CallFailed(Exception):
    """One Resource Manager or Cloud Asset call failed for good (after retries)."""

    def __init__(self, call: str, resource: str, cause: BaseException) -> None:
        super().__init__(f"{call} on {resource}: {cause}")
        self.call, self.resource, self.cause = call, resource, cause


def describe_failure(failure: CallFailed, where: str) -> ScanError:
    """A ScanError that names the resource, the permission and what to do."""
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError

    permission = PERMISSION_OF[failure.call]
    cause = failure.cause
    code = getattr(cause, "code", None)
    # the REST client prefixes "GET http://...: "; the URL only repeats what the message says
    message = _REQUEST_PREFIX.sub("", getattr(cause, "message", None) or str(cause))
    text = (f"{failure.call} on {failure.resource} ({where}; needs {permission}) failed: "
            + (f"{code} {message}" if code else message))
    api = "Cloud Asset" if failure.call == "search_all_resources" else "Resource Manager"
    if isinstance(cause, exceptions.Unauthorized | GoogleAuthError):
        hint = ("the credentials were refused; check GOOGLE_APPLICATION_CREDENTIALS or workload identity; "
                "nothing was removed")
    elif isinstance(cause, exceptions.Forbidden):
        hint = (f"grant {permission} on {failure.resource} to the scanner's identity (discovery/gcp-role.yaml is a "
                "read-only role with every permission envlabel uses)"
                + (" and enable cloudasset.googleapis.com in the project of its credentials" if api == "Cloud Asset"
                   else "") + "; nothing was removed")
    elif isinstance(cause, exceptions.TooManyRequests) or isinstance(getattr(cause, "cause", None),
                                                                     exceptions.TooManyRequests):
        hint = (f"{api} quota still exhausted after retrying; raise the read-requests quota or scan less "
                "often (schedule.interval); nothing was removed")
    else:
        hint = f"the {api} call failed; check api_endpoint and retry later; nothing was removed"
    return ScanError(failure.resource, text, hint)


def transform_organization(org: Any, tags: Mapping[str, str]) -> Resource:
    return Resource(GCP_CRM + org.name, PROVIDER, "gcp:organization", org.display_name or org.name, None,
                    dict(tags), org.name, path=f"/{org.display_name or org.name}")


def transform_folder(folder: Any, tags: Mapping[str, str], parent_path: str) -> Resource:
    return Resource(GCP_CRM + folder.name, PROVIDER, "gcp:folder", folder.display_name, GCP_CRM + folder.parent,
                    dict(tags), folder.parent, name_signal=True, path=f"{parent_path}/{folder.display_name}")


def transform_project(project: Any, tags: Mapping[str, str], parent_path: str) -> Resource:
    return Resource(GCP_CRM + f"projects/{project.project_id}", PROVIDER, "gcp:project", project.project_id,
                    GCP_CRM + project.parent, merge_tags(project.labels, tags), project.parent,
                    aliases=(GCP_CRM + project.name,), path=f"{parent_path}/{project.project_id}")


def asset_kind(asset_type: str) -> str:
    """The short form of a Cloud Asset type, the kind a resource below a project is recorded as.

    >>> asset_kind("compute.googleapis.com/Instance"), asset_kind("sqladmin.googleapis.com/Instance")
    ('compute.Instance', 'sqladmin.Instance')
    """
    service, _, type_name = asset_type.partition("/")
    return f"{service.removesuffix('.googleapis.com')}.{type_name}"


def project_id_of(result: Any, project_ids: Mapping[str, str]) -> str:
    """The project id of a search result: ``result.project`` is ``projects/NUMBER``, so its number is looked up
    among the projects the scan recorded, else read off the parent's or its own full name (a bucket's name says
    ``projects/_``, a secret's the number); the number itself is the last resort (it is a project's alias)."""
    number: str = result.project
    if number in project_ids:
        return project_ids[number]
    for name in (result.parent_full_resource_name, result.name):
        match = _PROJECT_IN_NAME.match(name)
        if match and not match.group(1).isdigit():
            return match.group(1)
    return number.removeprefix("projects/")


def transform_asset(result: Any, project_ids: Mapping[str, str]) -> Resource:
    """A ResourceSearchResult as a resource in its project; its directly bound tags replace labels of their key."""
    project = f"projects/{project_id_of(result, project_ids)}"
    tags = {t.tag_key.rsplit("/", 1)[-1]: t.tag_value.rsplit("/", 1)[-1] for t in result.tags}
    return Resource(result.name, PROVIDER, asset_kind(result.asset_type),
                    result.display_name or result.name.rsplit("/", 1)[-1], GCP_CRM + project,
                    merge_tags(result.labels, tags), project, region="" if result.location == "global" else
                    result.location, aliases=project_id_alias(result.name, project),
                    facts=asset_facts(result.asset_type, _versioned_v1(result)))


def _versioned_v1(result: Any) -> Mapping[str, Any] | None:
    """The v1 representation among a search result's versioned resources (None when Cloud Asset sent none)."""
    for versioned in getattr(result, "versioned_resources", ()):
        if versioned.version == "v1":
            return versioned.resource  # type: ignore[no-any-return]
    return None


def asset_facts(asset_type: str, resource: Mapping[str, Any] | None) -> dict[str, Any]:
    """Recovery facts from a resource's own v1 representation; only the keys it holds (missing: not known).

    >>> asset_facts("sqladmin.googleapis.com/Instance",
    ...             {"settings": {"deletionProtectionEnabled": False, "backupConfiguration": {"enabled": True}}})
    {'deletion_protection': False, 'backups_enabled': True}
    >>> asset_facts("storage.googleapis.com/Bucket", {"softDeletePolicy": {"retentionDurationSeconds": "604800"}})
    {'versioning': False, 'soft_delete_days': 7}
    >>> asset_facts("storage.googleapis.com/Bucket", None)
    {}
    """
    if resource is None:
        return {}
    facts: dict[str, Any] = {}
    if asset_type == "sqladmin.googleapis.com/Instance":
        settings = resource.get("settings") or {}
        if "deletionProtectionEnabled" in settings:
            facts["deletion_protection"] = bool(settings["deletionProtectionEnabled"])
        backups = settings.get("backupConfiguration") or {}
        if "enabled" in backups:
            facts["backups_enabled"] = bool(backups["enabled"])
    elif asset_type == "storage.googleapis.com/Bucket":
        # the JSON API omits ``versioning`` on a bucket where it was never enabled
        facts["versioning"] = bool((resource.get("versioning") or {}).get("enabled", False))
        seconds = (resource.get("softDeletePolicy") or {}).get("retentionDurationSeconds")
        if seconds is not None:
            facts["soft_delete_days"] = int(seconds) // 86400
    return facts


def project_id_alias(name: str, project: str) -> tuple[str, ...]:
    """The name with the project's id where Cloud Asset wrote its number (secrets: ``projects/NUMBER/secrets/S``),
    so a target named as gcloud names it (by project id) finds the stored resource and its own labels.

    >>> project_id_alias("//secretmanager.googleapis.com/projects/123/secrets/db", "projects/payments-prod")
    ('//secretmanager.googleapis.com/projects/payments-prod/secrets/db',)
    """
    match = _PROJECT_NUMBER_IN_NAME.match(name)
    if match is None or project.removeprefix("projects/").isdigit():
        return ()
    start, end = match.span(1)
    return (name[:start] + project.removeprefix("projects/") + name[end:],)


def merge_tags(labels: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    """Labels, then tags: a tag binding replaces a label of the same key (tags are IAM-governed).

    >>> merge_tags({"env": "dev", "team": "a"}, {"environment": "Production", "team": "b"})
    {'env': 'dev', 'team': 'b', 'environment': 'Production'}
    """
    return {**dict(labels), **dict(tags)}


def fields_for(asset_type: str) -> list[str]:
    """The read mask of one type's search: the record's fields, and the versioned resource of a type with facts."""
    return [*ASSET_FIELDS, "versioned_resources"] if asset_type in FACT_ASSET_TYPES else list(ASSET_FIELDS)


class GcpScanner:
    """Scans one GCP organization. ``clients``, ``retry`` and ``page_size`` are injectable for tests."""

    permissions = PERMISSIONS

    def __init__(self, source: GcpSource, *, clients: Clients | None = None, retry: Any = None,
                 page_size: int = 300, timeout_s: float = 30.0, max_workers: int = 8,
                 asset_page_size: int = ASSET_PAGE_SIZE) -> None:
        self.source = source
        self._clients = clients
        self.retry = retry if retry is not None else default_retry()
        self.page_size = page_size
        self.asset_page_size = asset_page_size
        self.timeout_s = timeout_s
        self.max_workers = max_workers
        # held across the (few: one per distinct tag value) lookups so each name is fetched once
        self._names_lock = threading.Lock()
        self._tag_names: dict[str, tuple[str, str]] = {}  # tagValues/N -> (key short name, value short name)
        self._key_names: dict[str, str] = {}  # tagKeys/N -> short name

    @property
    def clients(self) -> Clients:
        """Built on first use, so missing credentials are a scan error rather than a crash at start-up."""
        if self._clients is None:
            self._clients = make_clients(self.source)
        return self._clients

    # -- get ----------------------------------------------------------------------------------
    def _call(self, call: str, resource: str, method: Callable[..., Any], **request: Any) -> Any:
        try:
            return method(request=request, retry=self.retry, timeout=self.timeout_s)
        except _call_errors() as exc:
            raise CallFailed(call, resource, exc) from exc

    def _list(self, call: str, resource: str, method: Callable[..., Any], **request: Any) -> list[Any]:
        """Every item of every page; a failure on any page fails the whole listing (never a partial list)."""
        pager = self._call(call, resource, method, page_size=self.page_size, **request)
        try:
            return list(pager)
        except _call_errors() as exc:
            raise CallFailed(call, resource, exc) from exc

    def _tag_pair(self, value_name: str, key_name: str | None = None) -> tuple[str, str]:
        """(key short name, value short name) of a tag value, each looked up once per scan."""
        with self._names_lock:
            return self._lookup_tag_pair(value_name, key_name)

    def _lookup_tag_pair(self, value_name: str, key_name: str | None) -> tuple[str, str]:
        if value_name not in self._tag_names:
            value = self._call("get_tag_value", value_name, self.clients.tag_values.get_tag_value, name=value_name)
            key_name = key_name or value.parent
            if key_name not in self._key_names:
                key = self._call("get_tag_key", key_name, self.clients.tag_keys.get_tag_key, name=key_name)
                self._key_names[key_name] = key.short_name
            self._tag_names[value_name] = (self._key_names[key_name], value.short_name)
        return self._tag_names[value_name]

    def get_bound_tags(self, name: str) -> dict[str, str]:
        """Tags bound to an organization or folder itself."""
        bindings = self._list("list_tag_bindings", name, self.clients.tag_bindings.list_tag_bindings,
                              parent=GCP_CRM + name)
        return dict(self._tag_pair(b.tag_value) for b in bindings)

    def get_own_effective_tags(self, name: str) -> dict[str, str]:
        """Tags bound to a project itself, from its effective tags (inherited ones stay with their ancestor)."""
        effective = self._list("list_effective_tags", name, self.clients.tag_bindings.list_effective_tags,
                               parent=GCP_CRM + name)
        return dict(self._tag_pair(t.tag_value, t.tag_key) for t in effective if not t.inherited)

    # -- walk ---------------------------------------------------------------------------------
    def scan(self) -> ScanResult:
        from google.auth.exceptions import DefaultCredentialsError

        org_name = self.source.organization_name
        try:
            self.clients  # noqa: B018 - builds the clients, which looks for credentials
        except DefaultCredentialsError as exc:
            return ScanResult(self.source.name, [], [ScanError(org_name, f"no Google credentials: {exc}", (
                "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, use workload identity, or run "
                "`gcloud auth application-default login` (a local fake needs api_endpoint: http://...); "
                "nothing was removed"))])
        try:
            org = self._call("get_organization", org_name, self.clients.organizations.get_organization,
                             name=org_name)
            root = transform_organization(org, self.get_bound_tags(org_name))
        except CallFailed as failure:
            return ScanResult(self.source.name, [], [describe_failure(failure, "the organization")])
        resources, errors, scopes = [root], [], set()
        # Level by level: the folders of one depth are listed at once (on ``lists``), the tags of their
        # children read at once (on ``tags``); two pools, so a listing never waits for a worker it holds.
        frontier = [(org_name, root.path)]
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="envlabel-gcp-list") as lists, \
                ThreadPoolExecutor(self.max_workers, thread_name_prefix="envlabel-gcp-tags") as tags:
            while frontier:
                outcomes = list(lists.map(lambda c: self.scan_children(tags, *c), frontier))
                next_frontier: list[tuple[str, str]] = []
                for (container, _), (found, failures) in zip(frontier, outcomes, strict=True):
                    resources += found
                    errors += [describe_failure(f, where) for f, where in failures]
                    next_frontier += [(r.id.removeprefix(GCP_CRM), r.path) for r in found if r.kind == "gcp:folder"]
                    if not failures:
                        scopes.add(container)
                frontier = next_frontier
        assets, asset_errors, asset_scopes = self.scan_assets(project_ids(resources))
        return ScanResult(self.source.name, resources + assets, errors + asset_errors,
                          frozenset(scopes | asset_scopes))

    def scan_children(self, pool: ThreadPoolExecutor, container: str,
                      path: str) -> tuple[list[Resource], list[tuple[CallFailed, str]]]:
        """The folders and projects directly in ``container``, each with its tags; and what failed.

        Listing is one paged call per kind; reading each child's tags is one call per child, so
        those run on ``pool`` (a large organization has thousands of projects in few folders).
        """
        found: list[Resource] = []
        failures: list[tuple[CallFailed, str]] = []
        listings: Iterable[tuple[str, Callable[..., Any]]] = (
            ("list_folders", self.clients.folders.list_folders),
            ("list_projects", self.clients.projects.list_projects))
        for call, method in listings:
            try:
                children = self._list(call, container, method, parent=container)
            except CallFailed as failure:
                failures.append((failure, path))
                continue
            for child, outcome in zip(children, pool.map(lambda c: self.read_child(c, path), children), strict=True):
                if isinstance(outcome, CallFailed):
                    # its tags are unknown: record neither it nor (for a folder) anything below it
                    failures.append((outcome, f"{path}/{getattr(child, 'display_name', '') or child.name}"))
                else:
                    found.append(outcome)
        return found, failures

    def read_child(self, child: Any, path: str) -> Resource | CallFailed:
        """A listed folder or project with its own tags, or the call that failed reading them."""
        try:
            if child.name.startswith("folders/"):
                return transform_folder(child, self.get_bound_tags(child.name), path)
            return transform_project(child, self.get_own_effective_tags(child.name), path)
        except CallFailed as failure:
            return failure

    # -- assets below the projects ------------------------------------------------------------
    def scan_assets(self, projects: Mapping[str, str]) -> tuple[list[Resource], list[ScanError], set[str]]:
        """Every resource of the configured asset types, one paged search per type on a pool; and, when every
        search completed, the asset scope of every project (a failed type might have held anything, anywhere)."""
        types = list(dict.fromkeys(self.source.asset_types))
        if not types:
            return [], [], set()
        with ThreadPoolExecutor(min(self.max_workers, len(types)), thread_name_prefix="envlabel-gcp-assets") as pool:
            outcomes = list(pool.map(lambda t: self.search_assets(t, projects), types))
        found: list[Resource] = []
        errors: list[ScanError] = []
        for asset_type, outcome in zip(types, outcomes, strict=True):
            if isinstance(outcome, CallFailed):
                errors.append(describe_failure(outcome, f"the search for {asset_type}"))
            else:
                found += outcome
        if errors:
            return found, errors, set()
        return found, [], {f"projects/{p}" for p in projects.values()} | {r.scope for r in found}

    def search_assets(self, asset_type: str, projects: Mapping[str, str]) -> list[Resource] | CallFailed:
        """All resources of one type in the organization; a failure on any page fails the type (never a part)."""
        from google.protobuf.field_mask_pb2 import FieldMask

        org = self.source.organization_name
        try:
            pager = self._call("search_all_resources", org, self.clients.assets.search_all_resources, scope=org,
                               asset_types=[asset_type], page_size=self.asset_page_size,
                               read_mask=FieldMask(paths=fields_for(asset_type)))
            return [transform_asset(r, projects) for r in pager]
        except CallFailed as failure:
            return failure
        except _call_errors() as exc:
            return CallFailed("search_all_resources", org, exc)

    def lookup_asset(self, full_name: str) -> Resource | None:
        """The one resource named ``full_name``, by an exact-name search of the organization (None: none such)."""
        from google.protobuf.field_mask_pb2 import FieldMask

        org = self.source.organization_name
        pager = self._call("search_all_resources", org, self.clients.assets.search_all_resources, scope=org,
                           query=f'name="{full_name}"', page_size=2, read_mask=FieldMask(paths=list(ASSET_FIELDS)))
        try:
            page = next(iter(pager.pages))
        except StopIteration:
            return None
        except _call_errors() as exc:
            raise CallFailed("search_all_resources", org, exc) from exc
        match = next((r for r in page.results if r.name == full_name), None)
        return None if match is None else transform_asset(match, {})


def project_ids(resources: Iterable[Resource]) -> dict[str, str]:
    """``projects/NUMBER`` -> project id of the projects a walk recorded (their alias is the number form)."""
    return {alias.removeprefix(GCP_CRM): r.name for r in resources if r.kind == "gcp:project" for alias in r.aliases}


_FULL_NAME = re.compile(r"^//[a-z0-9.-]+\.googleapis\.com/[^\s\"]+$")


def lookup_gcp_asset(source: GcpSource, full_name: str, timeout: float | timedelta) -> Resource | None:
    """The record a scan would make of ``full_name`` (a ``//SERVICE.googleapis.com/...`` name), read with one
    exact-name Cloud Asset search bounded by ``timeout`` (retries of 429s included); None: Cloud Asset knows no
    such resource. Raises :class:`envlabel.discovery.lookup.LookupFailed` saying what failed and what to do.

    Cloud Asset indexes a change within minutes, so a resource created just now may be None: the check fails
    closed on None, which is the safe side of that lag."""
    from envlabel.discovery.lookup import LookupFailed

    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not _FULL_NAME.match(full_name):
        raise LookupFailed(f"{full_name!r} is not a full resource name",
                           "pass //SERVICE.googleapis.com/projects/P/..., as Cloud Asset names it")
    scanner = GcpScanner(source, retry=default_retry(seconds, initial_s=min(1.0, seconds / 8), maximum_s=seconds / 2),
                         timeout_s=seconds)
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return scanner.lookup_asset(full_name)
    except DefaultCredentialsError as exc:
        raise LookupFailed(f"no Google credentials: {exc}", "set GOOGLE_APPLICATION_CREDENTIALS or use workload "
                           "identity (a local fake needs api_endpoint: http://...)") from exc
    except CallFailed as failure:
        error = describe_failure(failure, f"the lookup of {full_name}")
        raise LookupFailed(error.message, error.hint.removesuffix("; nothing was removed")) from failure
