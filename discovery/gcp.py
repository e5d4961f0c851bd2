"""GCP discovery: one organization, its folders (recursively) and projects, with labels and tags.

Get -> transform -> return, through the real google-cloud-resource-manager
client (REST transport). What it records, and why:

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
- scopes are the containers listed (``organizations/N``, ``folders/N``); a
  container whose listing or whose children's tags failed is left out of
  ``ScanResult.scopes``, so only its part of the estate ages towards stale.

Partial is not empty: a call that fails (after retrying 429/503 and rate-limit
403s with backoff) becomes a :class:`ScanError` naming the resource and the IAM
permission; a node whose tags could not be read is not recorded and its subtree
is not walked (its children's labels depend on it), and the incomplete scan
removes nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
}
#: every permission the scanner uses; discovery/gcp-role.yaml grants exactly these
PERMISSIONS: tuple[str, ...] = tuple(sorted(set(PERMISSION_OF.values())))

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


def make_clients(source: GcpSource) -> Clients:
    """REST clients; an ``http://`` api_endpoint (a local fake) is used with anonymous credentials."""
    from google.cloud import resourcemanager_v3 as rm

    kwargs: dict[str, Any] = {"transport": "rest"}
    if source.api_endpoint:
        kwargs["client_options"] = {"api_endpoint": source.api_endpoint}
        if source.api_endpoint.startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return Clients(rm.OrganizationsClient(**kwargs), rm.FoldersClient(**kwargs), rm.ProjectsClient(**kwargs),
                   rm.TagBindingsClient(**kwargs), rm.TagKeysClient(**kwargs), rm.TagValuesClient(**kwargs))


def _call_errors() -> tuple[type[BaseException], ...]:
    """What a failed call raises: an API error, a refused or unrefreshable credential, a broken connection."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from requests import RequestException

    return (GoogleAPIError, GoogleAuthError, RequestException)


class CallFailed(Exception):
    """One Resource Manager call failed for good (after retries)."""

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
    if isinstance(cause, exceptions.Unauthorized | GoogleAuthError):
        hint = ("the credentials were refused; check GOOGLE_APPLICATION_CREDENTIALS or workload identity; "
                "nothing was removed")
    elif isinstance(cause, exceptions.Forbidden):
        hint = (f"grant {permission} on {failure.resource} to the scanner's identity (discovery/gcp-role.yaml is a "
                "read-only role with every permission envlabel uses); nothing was removed")
    elif isinstance(cause, exceptions.TooManyRequests) or isinstance(getattr(cause, "cause", None),
                                                                     exceptions.TooManyRequests):
        hint = ("Resource Manager quota still exhausted after retrying; raise the read-requests quota or scan less "
                "often (schedule.interval); nothing was removed")
    else:
        hint = "the Resource Manager call failed; check api_endpoint and retry later; nothing was removed"
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


def merge_tags(labels: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    """Labels, then tags: a tag binding replaces a label of the same key (tags are IAM-governed).

    >>> merge_tags({"env": "dev", "team": "a"}, {"environment": "Production", "team": "b"})
    {'env': 'dev', 'team': 'b', 'environment': 'Production'}
    """
    return {**dict(labels), **dict(tags)}


class GcpScanner:
    """Scans one GCP organization. ``clients``, ``retry`` and ``page_size`` are injectable for tests."""

    permissions = PERMISSIONS

    def __init__(self, source: GcpSource, *, clients: Clients | None = None, retry: Any = None,
                 page_size: int = 300, timeout_s: float = 30.0, max_workers: int = 8) -> None:
        self.source = source
        self._clients = clients
        self.retry = retry if retry is not None else default_retry()
        self.page_size = page_size
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
        return ScanResult(self.source.name, resources, errors, frozenset(scopes))

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
