"""curl, wget and HTTPie against infrastructure APIs: a raw request is checked like the client call it stands for.

    read(["curl", "-X", "DELETE", "https://10.0.0.1:6443/apis/apps/v1/namespaces/payments/deployments/api"], ctx)
    # [Operation(tool="curl", target="k8s://prod-eu/payments/deployments/api", action="delete")]

Each request (:mod:`envlabel.commands.http_clients` reads them) is decided by where it goes:

- **a Kubernetes API server**: one of :attr:`CommandContext.clusters_by_server` (host and port as
  :func:`envlabel.commands.kubeconfig.server_key` compares them, also where ``--resolve``/``--connect-to``
  really connect), else a server of the command's kubeconfig (its cluster name, never seen unless envlabel knows
  it): method and path read exactly as the Kubernetes guard reads them (``target_of``), plus reading secrets
  (their data: not a read) and deleting a namespace or collection (its contents). A glob in the address (curl
  expands it) cannot be read.
- **a path that looks like the Kubernetes API** (``/api/v1/namespaces/...``, ``/apis/GROUP/VERSION/...``) on a
  server envlabel does not know (``kubectl proxy``'s ``localhost:8001``, another address of a cluster): a request
  that may change something cannot be read.
- **AWS** (``*.amazonaws.com``, ``*.api.aws``): anything but a plain GET/HEAD (a query ``Action=``, any other
  method) cannot be read: use the aws CLI, which envlabel reads.
- **Google APIs** (``*.googleapis.com``): DELETE, PATCH and PUT on a path naming ``projects/P``, ``folders/N`` or
  ``organizations/N`` are that container's delete or update (the project's whole contents when the path is the
  project itself); POST (create or a custom method) and anything else that may change something cannot be read.
- anything else: not infrastructure envlabel labels, nothing.

Not followed: redirects (``-L``), ``~/.curlrc`` and ``~/.wgetrc``, a name that resolves (DNS, ``/etc/hosts``) to
a cluster's address under another spelling.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, shown
from envlabel.commands.http_clients import Request, program, requests_of
from envlabel.commands.k8s import api_request
from envlabel.commands.kubeconfig import kubeconfig_servers, match_server_url
from envlabel.commands.options import CannotRead

PROGRAMS = frozenset({"curl", "wget", "wget2", "http", "https", "xh", "xhs"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_K8S_PATH = re.compile(r"^/(api/v1/(namespaces|nodes|persistentvolumes|pods|secrets|services|configmaps)(/|$)"
                       r"|apis/[a-z0-9.-]+/v\d[a-z0-9]*/)")
_AWS_HOST = re.compile(r"(^|\.)(amazonaws\.com(\.cn)?|api\.aws)$")
_GOOGLE_HOST = re.compile(r"(^|\.)googleapis\.com$")
_GCP_CONTAINER = re.compile(r"/(projects|folders|organizations)/([a-z0-9][a-z0-9-]{0,62})(?=$|[/:])")
_GCP_CRM_SELF = re.compile(r"^/v[0-9a-z]+/(projects|folders|organizations)/[a-z0-9-]+$")


def read(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
    """The operations of one curl/wget/HTTPie command line (argv[0] is the program as written); what cannot be
    read is :class:`Unparsed`, decided fail closed."""
    tool = program(argv[0])
    try:
        found: list[Operation | Unparsed] = []
        for request in requests_of(argv):
            found.extend(_operations(tool, request, context))
        return found
    except CannotRead as error:
        return [Unparsed(tool, "", shown(str(error)), scope=error.scope or "")]


def _operations(tool: str, request: Request, context: CommandContext) -> list[Operation]:
    if not is_known(request.method):  # the strictest method it could be
        request = replace(request, method="DELETE", note=f"the method {shown(request.method)} is computed when the "
                                                         "command runs: read as DELETE")
    url = request.url if "://" in request.url else "http://" + request.url  # curl's default scheme
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        raise CannotRead(f"{shown(request.url)!r} is not an address envlabel can read") from None
    path = request.request_target or parts.path or "/"
    if not is_known(f"{parts.scheme}://{parts.netloc}"):
        if request.method in _SAFE:
            return []  # a read of an address computed when the command runs: not followed (docs: limits)
        raise CannotRead(f"{request.method} to {shown(request.url)}: the address is computed when the command runs, "
                         "so envlabel cannot tell what it reaches; write it out")
    # as the API server reads it: decoded, dot segments resolved
    normal = posixpath.normpath("/" + unquote(path).lstrip("/"))
    # the kubeconfig is read only for what may be an API request: other requests cost no file read
    cluster = _cluster(request, url, context, with_kubeconfig=normal.startswith(("/api", "//")))
    if cluster is not None:
        return _kubernetes(tool, request, url, cluster)
    may_change = request.method not in _SAFE
    if _K8S_PATH.match(normal) and (may_change or "/secrets" in normal or normal.endswith(
            ("/exec", "/attach", "/portforward"))):
        raise CannotRead(f"{request.method} {shown(request.url)} looks like a Kubernetes API request to a server "
                         "envlabel does not know (kubectl proxy?); add the cluster's server to a kubernetes source, or "
                         "run the kubectl command instead")
    if _AWS_HOST.search(host):
        if may_change or "action=" in parts.query.lower() or (request.aws_signed and request.method != "GET"):
            raise CannotRead(f"a raw {request.method} request to AWS ({host}) cannot be read; use the aws CLI, "
                             "which envlabel reads")
        return []
    if _GOOGLE_HOST.search(host) and may_change:
        return [_google(tool, request, host, shown(path))]
    return []


def _cluster(request: Request, url: str, context: CommandContext, *,
             with_kubeconfig: bool) -> tuple[str, str] | None:
    """(envlabel cluster, its server) the request reaches: envlabel's clusters first, then the kubeconfig's."""
    addresses = [url, *(_with_path(a, url) for a in request.connects_to)]
    for servers in (context.clusters_by_server, None):
        if servers is None and not with_kubeconfig:
            break
        table = servers if servers is not None else kubeconfig_servers(context)
        for address in addresses:
            found = match_server_url(address, table)
            if found:
                return found
    return None


def _with_path(address: str, url: str) -> str:
    parts = urlsplit(url)
    host, _, port = address.rpartition(":")
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def _kubernetes(tool: str, request: Request, url: str, found: tuple[str, str]) -> list[Operation]:
    from envlabel.guard.kubernetes import api_path

    cluster, server = found
    scope = f"k8s://{cluster}"
    if request.globbed:
        raise CannotRead(f"{request.url} has a {{...}} or [...] pattern {tool} expands into several requests: list "
                         "them, or pass -g", scope)
    api = api_path(request.request_target or url, server if not request.request_target else "")
    if not is_known(api):
        raise CannotRead(f"{request.method} {shown(api)}: the path is computed when the command runs, so envlabel "
                         f"cannot tell what it does in cluster {cluster}; write it out", scope)
    try:
        effect = api_request(cluster, request.method, api)
    except CannotRead as error:
        raise CannotRead(str(error), scope) from None
    if effect is None:
        return []
    note = "; ".join(filter(None, (f"{request.method} {api} on the API server of cluster {cluster}", request.note)))
    return [Operation(tool, effect.target, effect.action, contents=effect.contents, note=note)]


def _google(tool: str, request: Request, host: str, path: str) -> Operation:
    match = _GCP_CONTAINER.search(path)
    action = {"DELETE": "delete", "PATCH": "update", "PUT": "update"}.get(request.method)
    if match is None or action is None:
        raise CannotRead(f"a raw {request.method} request to {host} cannot be read (only DELETE, PATCH and PUT on a "
                         "path naming projects/P); use gcloud, which envlabel reads")
    target = f"{match.group(1)}/{match.group(2)}"
    whole = host.startswith("cloudresourcemanager.") and bool(_GCP_CRM_SELF.match(path))
    return Operation(tool, target, action, contents=whole and action == "delete",
                     note=f"{request.method} {host}{path}: {action} in {target}")
