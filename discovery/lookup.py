"""Looking up one target no scan has seen: ``lookup(source, target_id, timeout) -> Resource | None``.

The check calls it for a never-seen target inside a container a source has scanned, to label the target
from its own tags instead of deciding it as production for want of them. It is one bounded, read-only
read through the source's own credentials: AWS in :mod:`envlabel.discovery.aws.lookup`, Kubernetes a
metadata-only get of the object, a GCP resource below a project one Cloud Asset search for its name
(``lookup_gcp_asset`` in :mod:`envlabel.discovery.gcp`; until that exists, :class:`LookupUnavailable`).
The answer is the record a scan would make (None: the provider says there is no such object); anything
else, a deadline passed included, raises :class:`LookupFailed`, and the check fails closed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any

from envlabel.config import AwsSource, GcpSource, KubernetesSource, Source, format_duration
from envlabel.model import Resource

#: lookups run here so the caller's deadline holds whatever a socket does; a lookup that overruns finishes
#: (within its own socket timeouts) and is discarded
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="envlabel-lookup")
_METADATA = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json;q=0.9"


class LookupFailed(Exception):
    """The lookup could not answer; ``message`` says why, ``hint`` what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


class LookupUnavailable(LookupFailed):
    """The source has no live lookup for this target: the check may fall back to the container's label when no
    label can have been missed (docs/gcp.md, "Never-seen resources")."""


def gcp_lookup_function() -> Callable[[GcpSource, str, float], Resource | None]:
    """``discovery.gcp.lookup_gcp_asset(source, full_name, timeout_seconds) -> Resource | None``, or
    :class:`LookupUnavailable` when this envlabel's scanner has none."""
    from envlabel.discovery import gcp

    found: Callable[[GcpSource, str, float], Resource | None] | None = getattr(gcp, "lookup_gcp_asset", None)
    if found is None:
        raise LookupUnavailable("GCP resources are not looked up by this envlabel",
                                "run `envlabel scan` for the GCP source to label it")
    return found


def lookup(source: Source, target_id: str, timeout: timedelta) -> Resource | None:
    """The record of ``target_id`` (canonical) as ``source`` would scan it, within ``timeout``.

    None: the provider answered that there is no such object. Raises :class:`LookupFailed`."""
    seconds = timeout.total_seconds()
    if isinstance(source, AwsSource):
        from envlabel.discovery.aws.lookup import lookup_aws

        future = _POOL.submit(lookup_aws, source, target_id, seconds)
    elif isinstance(source, KubernetesSource):
        future = _POOL.submit(lookup_kubernetes, source, target_id, seconds)
    elif isinstance(source, GcpSource) and target_id.startswith("//") and "/projects/" in target_id:
        future = _POOL.submit(gcp_lookup_function(), source, target_id, seconds)
    else:
        raise LookupFailed(f"{source.type} targets are not looked up",
                           f"run `envlabel scan --source {source.name}` to label it")
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        future.cancel()
        raise LookupFailed(f"source {source.name} did not answer within lookup_timeout {format_duration(timeout)}",
                           "check the source's endpoint, or raise lookup_timeout") from None
    except LookupFailed:
        raise
    except Exception as exc:  # an SDK or a config loader failing in a way of its own
        raise LookupFailed(f"{type(exc).__name__}: {exc}", "check the source's endpoint and credentials") from exc


def lookup_kubernetes(source: KubernetesSource, target_id: str, timeout: float) -> Resource | None:
    """A metadata-only get of one object of a kind the source scans (labels are all labeling reads)."""
    from envlabel.discovery.kubernetes import KubernetesScanner, transform_object

    parts = target_id.removeprefix("k8s://").split("/")
    cluster, resource, name = parts[0], parts[-2], parts[-1]
    namespace = parts[1] if len(parts) == 4 else None
    if cluster != source.cluster_name:
        raise LookupFailed(f"source {source.name} reads cluster {source.cluster_name}, not {cluster}",
                           "set the source's cluster to the CLUSTER of its targets")
    scanner = KubernetesScanner(source)
    kind = next((k for k in scanner.kinds if resource in (k.resource, k.label) and k.namespaced == bool(namespace)),
                None)
    if kind is None:
        raise LookupFailed(f"source {source.name} does not scan {resource}",
                           "add the kind to the source's resources (the ClusterRole must allow get on it)")
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    path = f"{base}/namespaces/{namespace}/{kind.resource}/{name}" if namespace else f"{base}/{kind.resource}/{name}"
    client: Any = scanner.api_client
    try:
        request = client.param_serialize("GET", path, header_params={"Accept": _METADATA},
                                         auth_settings=["BearerToken"])
        response = client.call_api(*request, _request_timeout=(timeout, timeout))
        body = response.read()
    finally:
        client.close()  # one client per lookup: its connection pool goes with it
    if response.status == 404:
        return None
    if response.status != 200:
        try:
            message = str(json.loads(body).get("message") or "")
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        raise LookupFailed(f"get {kind.label} {name} answered HTTP {response.status}: {message}",
                           f"grant get on {kind.label} to envlabel's identity (discovery/kubernetes-clusterrole.yaml)")
    return transform_object(cluster, kind, json.loads(body))
