"""The incident, through the shell: a coding agent runs commands in a shell, and the Claude Code hook adapter
stands between it and the cloud.

An agent-like script is told to delete the staging ``orders-db``. It acts as Claude Code does: before each
Bash command it spawns the PreToolUse hook (``envlabel hook claude-code``, a real process) with the call on
stdin, and runs the command (``/bin/sh -c``) only when the hook does not refuse it; an ``ask`` goes to a person,
and no person approves anything here. The AWS estate is the production/staging/sandbox twins of
tests/test_incident.py in a moto server, scanned by the real scanner and served by the real API; the agent's
profiles live in its own AWS config file, and ``AWS_PROFILE=prod`` is what it was handed. The Kubernetes half
runs the real ``kubectl`` against the fake API server (tests/shell_estate.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.aws_estate import ROLE, _Account
from tests.helm_tool import tool
from tests.shell_estate import HookAnswer, KubeEstate, bash_call, kube_estate, run_hook
from tests.test_incident import REGION, build_twins

BIN = str(Path(sys.executable).parent)  # the venv's aws CLI (awscli v1)


@dataclass
class Outcome:
    """What happened to one command the agent tried."""

    hook: HookAnswer
    ran: bool
    returncode: int | None = None
    output: str = ""


@dataclass
class Agent:
    """Runs shell commands the way Claude Code's Bash tool does, with the envlabel hook installed."""

    environ: dict[str, str]
    cwd: Path
    tried: list[Outcome] = field(default_factory=list)

    def bash(self, command: str) -> Outcome:
        hook = run_hook("claude-code", bash_call(command, self.cwd), self.environ)
        assert hook.returncode == 0, hook.stderr  # a hook that fails would let the command run
        if hook.decision in ("deny", "ask"):  # ask: a person would be asked; nobody approves in this test
            outcome = Outcome(hook, ran=False)
        else:
            done = subprocess.run(["/bin/sh", "-c", command], cwd=self.cwd, env=self.environ, capture_output=True,
                                  text=True, timeout=120, check=False)
            outcome = Outcome(hook, ran=True, returncode=done.returncode, output=done.stdout + done.stderr)
        self.tried.append(outcome)
        return outcome


@dataclass
class AwsTwins:
    moto: str
    envlabel: str
    accounts: dict[str, _Account]
    home: Path

    def databases(self, ou: str) -> set[str]:
        """What really exists in that account, asked of moto without any guard."""
        rds = self.accounts[ou].client("rds", REGION)
        return {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}

    def agent(self, profile: str) -> Agent:
        """An agent whose shell holds the estate's profiles, ``profile`` the one it was handed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENVLABEL_"))}
        env.update({"HOME": str(self.home), "PATH": f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
                    "AWS_CONFIG_FILE": str(self.home / ".aws" / "config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(self.home / ".aws" / "credentials"),
                    "AWS_ENDPOINT_URL": self.moto, "AWS_PROFILE": profile, "ENVLABEL_URL": self.envlabel})
        return Agent(env, self.home)


def write_profiles(home: Path, accounts: dict[str, _Account]) -> None:
    """``prod``, ``staging`` and ``sandbox``: each assumes the role in its twin's account from the same keys."""
    aws = home / ".aws"
    aws.mkdir(parents=True)
    sections = ["[profile base]\nregion = us-east-1\n"]
    sections += [f"[profile {name}]\nrole_arn = arn:aws:iam::{accounts[ou].id}:role/{ROLE}\nsource_profile = base\n"
                 f"region = {REGION}\n" for name, ou in PROFILES.items()]
    (aws / "config").write_text("\n".join(sections))
    (aws / "credentials").write_text("[base]\naws_access_key_id = testing\naws_secret_access_key = testing\n")


PROFILES = {"prod": "Production", "staging": "Staging", "sandbox": "Sandbox"}


@pytest.fixture
def twins(moto: str, tmp_path: Path) -> Iterator[AwsTwins]:
    accounts = build_twins(moto)
    config = config_from_dict({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
        "approvers": {"staging": ["orders-oncall"]},
        "sources": [{"name": "aws", "type": "aws", "endpoint_url": moto, "regions": [REGION],
                     "organization": True, "assume_role": ROLE}],
    })
    store = open_store(config.store)
    assert run_source(config, store, config.sources[0]).complete
    home = tmp_path / "agent-home"
    write_profiles(home, accounts)
    with BackgroundServer(config, store) as server:
        yield AwsTwins(moto, server.url, accounts, home)


DELETE = "aws rds delete-db-instance --db-instance-identifier orders-db --skip-final-snapshot --endpoint-url {moto}"


def test_told_to_delete_staging_with_the_production_profile_the_command_is_denied(twins: AwsTwins) -> None:
    delete = DELETE.format(moto=twins.moto)
    agent = twins.agent("prod")  # the task says staging; the profile it was handed is production's
    denied = agent.bash(delete)
    assert not denied.ran
    assert denied.hook.decision == "deny"
    reason = denied.hook.reason  # what the model reads
    prod = twins.accounts["Production"].id
    assert f"rds:DeleteDBInstance (delete) on arn:aws:rds:{REGION}:{prod}:db:orders-db, which is production" \
        in reason
    assert "/Root/Production" in reason  # the evidence: the account sits in the Production OU
    assert "check which account, profile or cluster context the command uses" in reason
    assert "orders-db" in twins.databases("Production")

    # the same delete hidden in a longer line, the profile set inline: still the production twin
    chained = agent.bash(f"echo cleaning up && AWS_PROFILE=prod {delete} && echo done")
    assert (chained.ran, chained.hook.decision) == (False, "deny")
    wrapped = agent.bash(f"bash -c '{delete} --profile prod'")
    assert (wrapped.ran, wrapped.hook.decision) == (False, "deny")
    assert "orders-db" in twins.databases("Production")

    # the database it was told to delete is staging's: that needs a person (orders-oncall)
    asked = twins.agent("staging").bash(delete)
    assert (asked.ran, asked.hook.decision) == (False, "ask")
    assert "which is staging (approvers: orders-oncall)" in asked.hook.reason
    assert "orders-db" in twins.databases("Staging")

    # sandbox: envlabel has nothing against it, the real aws CLI runs, and the sandbox twin is gone
    sandbox = twins.agent("sandbox").bash(delete)
    assert sandbox.hook.stdout == ""
    assert (sandbox.ran, sandbox.returncode) == (True, 0), sandbox.output
    assert "orders-db" not in twins.databases("Sandbox")
    assert {"orders-db"} == twins.databases("Production") == twins.databases("Staging")


def test_reads_run_untouched_and_unrelated_commands_never_reach_envlabel(twins: AwsTwins) -> None:
    agent = twins.agent("prod")
    listed = agent.bash(f"aws rds describe-db-instances --endpoint-url {twins.moto} "
                        "--query 'DBInstances[].DBInstanceIdentifier' --output text")
    assert (listed.hook.stdout, listed.ran, listed.returncode) == ("", True, 0), listed.output
    assert "orders-db" in listed.output
    agent.environ["ENVLABEL_URL"] = "http://127.0.0.1:9"  # nothing listens: asking would be a deny
    unrelated = agent.bash("ls -a && echo ok")
    assert (unrelated.hook.stdout, unrelated.ran, unrelated.returncode) == ("", True, 0)


# -- kubectl ---------------------------------------------------------------------------------------------
@pytest.fixture
def estate(tmp_path: Path) -> Iterator[KubeEstate]:
    with kube_estate(tmp_path) as built:
        yield built


def test_kubectl_delete_in_production_is_denied_and_in_sandbox_it_goes_through(estate: KubeEstate) -> None:
    kubectl = tool("kubectl")
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file),
                         PATH=f"{kubectl.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    agent = Agent(env, estate.home)

    denied = agent.bash("kubectl delete deployment api -n payments")
    assert (denied.ran, denied.hook.decision) == (False, "deny")
    assert "k8s://prod-eu/payments/deployments/api, which is production" in denied.hook.reason
    assert "environment=production on k8s:namespaces payments" in denied.hook.reason
    assert estate.deployments("payments") == {"api"}

    # what a pattern matcher on `kubectl delete` misses: the same delete sent to the API server with curl
    token = "Authorization: Bearer fake-token"
    by_curl = agent.bash(f"curl -s -X DELETE -H '{token}' {estate.api_server}/apis/apps/v1/namespaces/payments/"
                         "deployments/api")
    assert (by_curl.ran, by_curl.hook.decision) == (False, "deny")
    assert estate.deployments("payments") == {"api"}

    sandbox = agent.bash("kubectl delete deployment api -n scratch")
    assert sandbox.hook.stdout == ""
    assert (sandbox.ran, sandbox.returncode) == (True, 0), sandbox.output
    assert 'deployment.apps "api" deleted' in sandbox.output
    assert estate.deployments("scratch") == set()
    assert estate.deployments("payments") == estate.deployments("payments-stg") == {"api"}
