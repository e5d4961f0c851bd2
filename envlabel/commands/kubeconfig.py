"""Which envlabel cluster and namespace a kubectl or helm command reaches: its kubeconfig, context and server.

The kubeconfig is ``--kubeconfig``, else every file of ``KUBECONFIG`` (merged as kubectl merges them: the first
file that sets ``current-context`` decides it, the first entry of each name wins), else ``$HOME/.kube/config``;
``HOME`` and ``KUBECONFIG`` come from the command's environment (:class:`CommandContext`), never from the process
that plans it. The context is ``--context`` (helm: ``--kube-context`` or ``HELM_KUBECONTEXT``), else the
kubeconfig's ``current-context``. The envlabel cluster is, in this order:

1. the API server the command talks to (``--server``, else the ``--cluster`` entry's, else the context's
   cluster's ``server``, else in-cluster ``KUBERNETES_SERVICE_HOST``) found in
   :attr:`CommandContext.clusters_by_server`: the server is where the request really goes, so a kubeconfig
   whose context is named like a sandbox but points at production is read as production;
2. the context's name in :attr:`CommandContext.clusters_by_context`;
3. the kubeconfig's cluster name of that context (a never-seen cluster is decided as production).

Anything else (no kubeconfig, a context it does not have) cannot be read: fail closed. The namespace is ``-n``,
else the context's ``namespace``, else ``default``.

Server addresses are compared by host and port (the scheme's default port filled in, loopback names and the
legacy IPv4 spellings curl accepts made one), then by the longest path prefix: ``https://rancher/k8s/clusters/a``
and ``.../b`` are two clusters.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from envlabel.commands import CommandContext, is_known, shown
from envlabel.commands.options import CannotRead

#: a kubeconfig larger than this is not a kubeconfig
MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024
#: a name that can be one segment of a k8s:// target (envlabel.targets)
K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


@dataclass(frozen=True, slots=True)
class Kubeconfig:
    current_context: str | None = None
    #: context name -> its fields (cluster, namespace, user)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: cluster name -> server URL
    servers: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KubeScope:
    """Where a command acts: the envlabel cluster, the namespace it defaults to, and how the cluster was found."""

    cluster: str
    namespace: str
    how: str


_cache: dict[tuple[str, int, int], dict[str, Any]] = {}


def kubeconfig_paths(context: CommandContext, explicit: str | None) -> list[str]:
    """The kubeconfig files a command reads, in kubectl's order (see the module docstring)."""
    if explicit:
        if not is_known(explicit):
            raise CannotRead(f"--kubeconfig {shown(explicit)} is computed when the command runs: name the file")
        return [_path(explicit, context)]
    listed = context.environ.get("KUBECONFIG")
    if listed and not is_known(listed):
        raise CannotRead(f"KUBECONFIG={shown(listed)} is computed when the command runs, so envlabel cannot tell "
                         "which cluster the command reaches: set it to the file")
    if listed:
        return [_path(p, context) for p in listed.split(os.pathsep) if p]
    home = context.environ.get("HOME")
    if home and not is_known(home):
        # sudo, doas and ssh run the command with another HOME, so ~/.kube/config is a file envlabel cannot name
        raise CannotRead(f"HOME={shown(home)} is set when the command runs (sudo, doas and ssh change it), so "
                         "envlabel cannot tell which kubeconfig and cluster the command reaches: pass --kubeconfig "
                         "FILE or set KUBECONFIG")
    return [os.path.join(home, ".kube", "config")] if home else []


def load_kubeconfig(context: CommandContext, explicit: str | None = None) -> Kubeconfig:
    """The merged kubeconfig of a command; missing files are skipped (as kubectl skips them), an explicit
    ``--kubeconfig`` that is missing or a file that is not a kubeconfig cannot be read."""
    current: str | None = None
    contexts: dict[str, dict[str, Any]] = {}
    servers: dict[str, str] = {}
    read: list[str] = []
    for path in kubeconfig_paths(context, explicit):
        document = _read_file(path, required=bool(explicit))
        if document is None:
            continue
        read.append(path)
        if current is None and isinstance(document.get("current-context"), str) and document["current-context"]:
            current = document["current-context"]
        for entry in _entries(document, "contexts", path):
            contexts.setdefault(entry["name"], entry.get("context") or {})
        for entry in _entries(document, "clusters", path):
            server = (entry.get("cluster") or {}).get("server")
            if isinstance(server, str):
                servers.setdefault(entry["name"], server)
    return Kubeconfig(current, contexts, servers, tuple(read))


def resolve_scope(context: CommandContext, *, kubeconfig: str | None, context_name: str | None,
                  cluster_name: str | None = None, server: str | None = None,
                  namespace: str | None = None) -> KubeScope:
    """The envlabel cluster and default namespace of a kubectl/helm command, from its flags (the module docstring
    gives the order). Raises :class:`CannotRead` when no cluster can be named."""
    for flag, value in (("--context", context_name), ("--cluster", cluster_name), ("--server", server)):
        if value is not None and not is_known(value):
            raise CannotRead(f"{flag} {shown(value)} is computed when the command runs, so envlabel cannot tell "
                             "which cluster the command reaches: write it out")
    config = load_kubeconfig(context, kubeconfig)
    name = context_name or config.current_context
    entry = config.contexts.get(name) if name else None
    if name and entry is None and name not in context.clusters_by_context:
        where = ", ".join(config.files) or "no kubeconfig file"
        raise CannotRead(f"kubeconfig context {name!r} is not in {where}, so envlabel cannot tell which cluster "
                         "the command reaches; pass --context with a context of your kubeconfig")
    entry = entry or {}
    kube_cluster = cluster_name or entry.get("cluster")
    address = server or (config.servers.get(kube_cluster) if isinstance(kube_cluster, str) else None)
    if address is None and not name:
        address = _in_cluster_server(context)
    namespace = namespace or (entry.get("namespace") if isinstance(entry.get("namespace"), str) else None)
    scope = _name_cluster(context, name, kube_cluster, address)
    if scope is None:
        raise CannotRead("no kubeconfig context (" + (", ".join(config.files) or "no kubeconfig found: set "
                         "KUBECONFIG or pass --kubeconfig") + "), so envlabel cannot tell which cluster the command "
                         "reaches; pass --context, or map it in a kubernetes source of envlabel's config")
    cluster, how = scope
    if not K8S_NAME.match(cluster):
        raise CannotRead(f"the kubeconfig's cluster {cluster!r} (server {address}) is not a cluster envlabel "
                         "knows: add a kubernetes source for it to envlabel's config (its `cluster` names it)")
    return KubeScope(cluster, namespace or "default", how)


def _name_cluster(context: CommandContext, name: str | None, kube_cluster: Any,
                  address: str | None) -> tuple[str, str] | None:
    if address:
        found = match_server(address, context.clusters_by_server)
        if found:
            return found, f"server {address} is envlabel cluster {found}"
    if name and name in context.clusters_by_context:
        cluster = context.clusters_by_context[name]
        return cluster, f"context {name} is envlabel cluster {cluster}"
    if isinstance(kube_cluster, str) and kube_cluster:
        return kube_cluster, f"kubeconfig cluster {kube_cluster} (not in envlabel's config: decided as never seen)"
    return None


def server_key(url: str) -> tuple[str, str] | None:
    """(host:port, path) of an address, comparable across spellings; None when it has no host.

    >>> server_key("https://K8S.example.")
    ('k8s.example:443', '')
    >>> server_key("http://127.1:8001/base/") == server_key("localhost:8001/base")
    True
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # curl's and httpie's default
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return None
    if port is None:
        port = 443 if parts.scheme.lower() == "https" else 80
    return f"{canonical_host(host)}:{port}", parts.path.rstrip("/")


def canonical_host(host: str) -> str:
    """One spelling of a host name or address: loopback is ``loopback``, IPv4 in its dotted form."""
    if host in _LOOPBACK_NAMES:
        return "loopback"
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    if _LEGACY_IPV4.match(host):  # 127.1, 2130706433, 0x7f000001: what inet_aton (and curl) accept
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return host
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return "loopback" if address.is_loopback else address.compressed


def match_server(url: str, clusters_by_server: Mapping[str, str]) -> str | None:
    """The envlabel cluster whose API server ``url`` is on (the longest matching path prefix), or None."""
    found = match_server_url(url, clusters_by_server)
    return found[0] if found else None


def match_server_url(url: str, clusters_by_server: Mapping[str, str]) -> tuple[str, str] | None:
    """(cluster, the configured server URL) for ``url``, or None."""
    key = server_key(url)
    if key is None:
        return None
    best: tuple[int, str, str] | None = None
    for server, cluster in clusters_by_server.items():
        candidate = server_key(server)
        if candidate is None or candidate[0] != key[0]:
            continue
        prefix = candidate[1]
        if (not prefix or key[1] == prefix or key[1].startswith(prefix + "/")) and (
                best is None or len(prefix) > best[0]):
            best = (len(prefix), cluster, server)
    return (best[1], best[2]) if best else None


def kubeconfig_servers(context: CommandContext) -> dict[str, str]:
    """Server URL -> kubeconfig cluster name of the command's kubeconfig (for raw HTTP requests to a cluster
    envlabel's config does not name). Unreadable kubeconfigs give nothing."""
    try:
        config = load_kubeconfig(context)
    except CannotRead:
        return {}
    return {server: name for name, server in config.servers.items() if K8S_NAME.match(name)}


def _in_cluster_server(context: CommandContext) -> str | None:
    host = context.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        return None
    port = context.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _path(path: str, context: CommandContext) -> str:
    home = context.environ.get("HOME")
    if path.startswith("~") and home:
        path = home + path[1:]
    return path if os.path.isabs(path) else os.path.join(context.cwd, path)


def _read_file(path: str, *, required: bool) -> dict[str, Any] | None:
    try:
        stat = os.stat(path)
    except OSError as error:
        if required:
            raise CannotRead(f"cannot read the kubeconfig {path}: {error.strerror}") from None
        return None
    key = (path, stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    if stat.st_size > MAX_KUBECONFIG_BYTES:
        raise CannotRead(f"{path} is larger than {MAX_KUBECONFIG_BYTES} bytes: not a kubeconfig envlabel reads")
    from envlabel.commands.k8s import load_yaml_documents

    try:
        with open(path, "rb") as file:
            documents = load_yaml_documents(file.read(), path)
    except OSError as error:
        raise CannotRead(f"cannot read the kubeconfig {path}: {error.strerror}") from None
    document = documents[0] if len(documents) == 1 and isinstance(documents[0], dict) else None
    if document is None:
        raise CannotRead(f"{path} is not a kubeconfig (one YAML mapping with contexts and clusters)")
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = document
    return document


def _entries(document: Mapping[str, Any], key: str, path: str) -> Sequence[dict[str, Any]]:
    entries = document.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                for e in entries):
        raise CannotRead(f"{path}: `{key}` is not a list of named entries, so it is not a kubeconfig")
    return entries
