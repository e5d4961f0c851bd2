"""A fake Kubernetes cluster with a kubeconfig and a source pointing at it, shared by the Kubernetes tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlabel.config import KubernetesSource
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster, write_kubeconfig


@dataclass
class FakeCluster:
    url: str
    fake: FakeKubernetes
    kubeconfig: Path

    def source(self, **fields: Any) -> KubernetesSource:
        return KubernetesSource.model_validate({"type": "kubernetes", "name": "prod-eu",
                                                "kubeconfig": str(self.kubeconfig), **fields})


@contextmanager
def fake_cluster(directory: Path, bookmark_interval: float | None = None) -> Iterator[FakeCluster]:
    url, fake = start_fake_cluster(bookmark_interval=bookmark_interval)
    try:
        yield FakeCluster(url, fake, write_kubeconfig(directory / "kubeconfig", url))
    finally:
        fake.stop()


def seed_payments(fake: FakeKubernetes) -> None:
    """Two namespaces, a node, one object of each scanned kind, and a secret nobody may read."""
    fake.seed("namespaces", "payments", labels={"environment": "staging", "team": "pay"})
    fake.seed("namespaces", "scratch", labels={"env": "dev"})
    fake.seed("nodes", "node-1", labels={"kubernetes.io/os": "linux"})
    for resource in ("deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "services", "ingresses",
                     "persistentvolumeclaims", "configmaps"):
        fake.seed(resource, "api", "payments", labels={"app": "api"})
    fake.seed("deployments", "worker", "scratch", labels={"environment": "production"})
    fake.seed("secrets", "db-password", "payments")
