"""Leader election's Kubernetes lock: a ``coordination.k8s.io/v1`` Lease.

It lives beside the scanner because this package is where envlabel talks to cluster APIs. It is the
one object envlabel writes: its own Lease in its own namespace, which the chart's Role allows and
nothing else (the scanner's ClusterRole stays read-only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("envlabel.leader")


class KubernetesLease:
    """A ``coordination.k8s.io/v1`` Lease, written with optimistic concurrency (resourceVersion)."""

    def __init__(self, api_client: Any, namespace: str, name: str, identity: str, lease_duration_s: float, *,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] | None = None) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self._clock = clock
        self._now = now or (lambda: datetime.now(UTC))
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.description = f"the Lease {namespace}/{name}"
        self.lost_on_error = False

    def try_acquire(self) -> bool:
        from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = V1Lease(metadata=V1ObjectMeta(name=self.name, namespace=self.namespace),
                           spec=self._spec(V1LeaseSpec(lease_transitions=0), taking=True))
            try:
                self._api.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:  # another replica created it first
                    return False
                raise
            self._observe(body.spec)
            return True
        spec = lease.spec or V1LeaseSpec()
        self._observe(spec)
        holder = spec.holder_identity
        if holder and holder != self.identity and self._clock() < self._observed_at + self._duration(spec):
            return False
        lease.spec = self._spec(spec, taking=holder != self.identity)
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)  # resourceVersion guards it
        except ApiException as exc:
            if exc.status == 409:  # someone renewed or took it between our read and write
                return False
            raise
        self._observe(lease.spec)
        return True

    def release(self) -> None:
        """Hand the lease back (empty holder, 1 s duration) so a follower need not wait for it to expire."""
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = self._now()
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except (ApiException, OSError) as exc:
            log.warning("could not release %s (%s); a follower takes over once it expires", self.description, exc)

    def _spec(self, spec: Any, *, taking: bool) -> Any:
        now = self._now()
        if taking:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + (1 if spec.holder_identity else 0)
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = max(1, round(self.lease_duration_s))
        return spec

    def _duration(self, spec: Any) -> float:
        return float(spec.lease_duration_seconds or self.lease_duration_s)

    def _observe(self, spec: Any) -> None:
        record = (spec.holder_identity, spec.renew_time, spec.lease_transitions, spec.lease_duration_seconds)
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()
