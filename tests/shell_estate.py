"""A cluster, a store and a served envlabel for the shell-command tests (check-command, the hooks, the incident).

The fake Kubernetes API server holds one production, one staging and one sandbox namespace (by label), each
with deployment ``api``; the real Kubernetes scanner records it as cluster ``prod-eu`` in SQLite, and the real
API serves it on loopback. The kubeconfig the agent uses names its context ``agent`` and its cluster
``agent-cluster``: only the config's kubernetes source (by the API server's address) says it is ``prod-eu``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from envlabel.config import load_config
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster, write_kubeconfig
from envlabel.store import open_store

ENVLABEL = str(Path(sys.executable).parent / "envlabel")
CLUSTER = "prod-eu"
NAMESPACES = {"payments": "production", "payments-stg": "staging", "scratch": "sandbox"}
APPROVERS = ["payments-oncall"]


@dataclass
class KubeEstate:
    fake: FakeKubernetes
    api_server: str
    #: the agent's kubeconfig (context ``agent``, cluster ``agent-cluster``)
    kubeconfig: Path
    #: envlabel's config file (the store and the kubernetes source naming the cluster prod-eu)
    config_file: Path
    #: the served envlabel API
    envlabel: str
    home: Path

    def deployments(self, namespace: str) -> set[str]:
        """What really exists in ``namespace``, read from the fake's own objects."""
        return {name for (ns, name) in self.fake.objects[("apps", "v1", "deployments")] if ns == namespace}

    def environ(self, **extra: str) -> dict[str, str]:
        """The agent's environment: its kubeconfig and home, and where envlabel is served."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVLABEL_", "KUBECONFIG"))}
        return {**env, "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig), "ENVLABEL_URL": self.envlabel,
                **extra}


@contextmanager
def kube_estate(directory: Path) -> Iterator[KubeEstate]:
    """The estate of the module docstring, scanned and served, for the duration of the block."""
    url, fake = start_fake_cluster()
    try:
        for namespace, environment in NAMESPACES.items():
            fake.seed("namespaces", namespace, labels={"environment": environment})
            fake.seed("deployments", "api", namespace, labels={"app": "api"})
        scanner_kubeconfig = write_kubeconfig(directory / "scanner-kubeconfig", url, context="scanner")
        agent_kubeconfig = write_kubeconfig(directory / "kubeconfig", url, context="agent")
        _rename_cluster(agent_kubeconfig, "agent-cluster")
        config_file = directory / "envlabel.yaml"
        config_file.write_text(yaml.safe_dump({
            "store": f"sqlite:///{directory / 'envlabel.db'}",
            "approvers": {"staging": APPROVERS},
            "sources": [{"name": "k8s", "type": "kubernetes", "kubeconfig": str(scanner_kubeconfig),
                         "cluster": CLUSTER, "watch": False}],
        }))
        config = load_config(config_file, environ={})
        store = open_store(config.store)
        assert run_source(config, store, config.sources[0]).complete
        home = directory / "home"
        home.mkdir()
        with BackgroundServer(config, store) as server:
            yield KubeEstate(fake, url, agent_kubeconfig, config_file, server.url, home)
    finally:
        fake.stop()


def _rename_cluster(kubeconfig: Path, name: str) -> None:
    """The kubeconfig's cluster entry renamed: the agent's names are not envlabel's."""
    document = json.loads(kubeconfig.read_text())
    document["clusters"][0]["name"] = name
    document["contexts"][0]["context"]["cluster"] = name
    kubeconfig.write_text(json.dumps(document))


def bash_call(command: str, cwd: Path | str, tool: str = "Bash") -> dict[str, Any]:
    """A PreToolUse hook call as Claude Code and Codex send it for their shell tool."""
    return {"session_id": "s-1", "transcript_path": "/dev/null", "cwd": str(cwd), "hook_event_name": "PreToolUse",
            "permission_mode": "default", "tool_name": tool, "tool_use_id": "toolu_1",
            "tool_input": {"command": command, "description": "run it"}}


@dataclass
class HookAnswer:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any] | None:
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def decision(self) -> str | None:
        """``permissionDecision``, or None when the hook said nothing (the agent's own rules apply)."""
        body = self.json
        return None if body is None else body.get("hookSpecificOutput", {}).get("permissionDecision")

    @property
    def reason(self) -> str:
        body = self.json or {}
        return str(body.get("hookSpecificOutput", {}).get("permissionDecisionReason", ""))


def run_hook(agent: str, payload: Any, environ: Mapping[str, str], *args: str) -> HookAnswer:
    """``envlabel hook AGENT`` as the agent spawns it: the call on stdin, the answer on stdout."""
    stdin = payload if isinstance(payload, str) else json.dumps(payload)
    done = subprocess.run([ENVLABEL, "hook", agent, *args], input=stdin, capture_output=True, text=True,
                          env=dict(environ), timeout=120, check=False)
    return HookAnswer(done.returncode, done.stdout, done.stderr)
