"""``envlabel check-command`` and ``POST /v1/check-command``: a shell command line, planned with real shell rules
and checked operation by operation against the real store and the real API (the fake Kubernetes API server's
estate of tests/shell_estate.py, scanned by the real scanner)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.service.core.commands import SEALED_MESSAGE
from tests.shell_estate import ENVLABEL, KubeEstate, kube_estate

DELETE_PROD = ["kubectl", "delete", "deployment", "api", "-n", "payments"]


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[KubeEstate]:
    with kube_estate(tmp_path) as built:
        yield built


def envlabel(estate: KubeEstate, *args: str, url: bool = False, cwd: Path | None = None,
             **extra: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a person or a script runs it: against the configured store, or the server (``url``)."""
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file), **extra)
    if not url:
        del env["ENVLABEL_URL"]
    return subprocess.run([ENVLABEL, *args], capture_output=True, text=True, env=env, cwd=cwd or estate.home,
                          timeout=120, check=False)


def answer_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(done.stdout)
    return body


@pytest.mark.parametrize("url", [False, True], ids=["store", "server"])
def test_exit_codes_are_checks_by_environment(estate: KubeEstate, url: bool) -> None:
    for namespace, code in (("payments", 5), ("payments-stg", 4), ("scratch", 0)):
        done = envlabel(estate, "check-command", "--json", "--", "kubectl", "delete", "deployment", "api", "-n",
                        namespace, url=url)
        assert done.returncode == code, done.stderr
        body = answer_of(done)
        assert body["unparsed"] == []
        [operation] = body["operations"]
        assert operation["target"] == f"k8s://prod-eu/{namespace}/deployments/api"
        assert operation["action"] == "delete"
        assert operation["tool"] == "kubectl"
        assert operation["command"] == f"kubectl delete deployment api -n {namespace}"
        assert operation["decision"] == body["decision"]
    assert all(estate.deployments(ns) == {"api"} for ns in ("payments", "payments-stg", "scratch"))


def test_a_command_checked_here_is_in_the_decision_log(estate: KubeEstate) -> None:
    """The auditor's question for shell commands too: who ran what, on what, decided how."""
    done = envlabel(estate, "check-command", "--", *DELETE_PROD, ENVLABEL_PRINCIPAL="agent-7")
    assert done.returncode == 5, done.stderr
    logged = answer_of(envlabel(estate, "decisions", "--json", "--principal", "agent-7"))["decisions"]
    assert [(d["interface"], d["action"], d["target"], d["decision"]) for d in logged] == [
        ("check-command", "delete", "k8s://prod-eu/payments/deployments/api", "deny")]
    assert estate.deployments("payments") == {"api"}


def test_text_output_names_each_operation_and_the_decision(estate: KubeEstate) -> None:
    line = "kubectl get pods -n payments && kubectl delete deployment api -n scratch || kubectl delete ns payments"
    done = envlabel(estate, "check-command", "--shell", line)
    assert done.returncode == 5, done.stderr
    text = done.stdout
    assert "kubectl delete ns payments:\ndeny: delete (delete) on k8s://prod-eu/namespaces/payments as " \
           "production\n" in text
    assert "kubectl delete deployment api -n scratch:\nallow: delete (delete) on " \
           "k8s://prod-eu/scratch/deployments/api as sandbox\n" in text
    assert "tag environment=production on k8s:namespaces payments" in text  # the evidence
    assert text.rstrip().endswith("decision: deny (2 operation(s))")
    assert "kubectl get pods" not in text  # a read is not an operation envlabel checks


def test_a_command_that_runs_no_infrastructure_tool_is_allowed_unasked(estate: KubeEstate) -> None:
    done = envlabel(estate, "check-command", "--shell", "make test && git push", url=True,
                    ENVLABEL_URL="http://127.0.0.1:9")  # nothing listens there: it is never asked
    assert (done.returncode, done.stdout.strip()) == (0, "allow: no infrastructure operation in this command "
                                                         "(nothing to check)")
    body = answer_of(envlabel(estate, "check-command", "--json", "--", "ls", "-la"))
    assert body == {"decision": "allow", "operations": [], "unparsed": []}


def test_what_cannot_be_understood_is_decided_fail_closed(estate: KubeEstate) -> None:
    # $APP is not known here: it could name anything in the namespace, so the namespace's contents decide
    done = envlabel(estate, "check-command", "--json", "--shell", "kubectl delete deployment $APP -n payments")
    assert done.returncode == 5
    [operation] = answer_of(done)["operations"]
    assert (operation["target"], operation["environment"]) == ("k8s://prod-eu/namespaces/payments", "production")
    # a context the kubeconfig does not have: which cluster is unknown, so a person must approve
    unknown = envlabel(estate, "check-command", "--json", "--", "kubectl", "--context", "elsewhere", "delete",
                       "deployment", "api", "-n", "scratch")
    assert unknown.returncode == 4
    [unparsed] = answer_of(unknown)["unparsed"]
    assert (unparsed["tool"], unparsed["decision"]) == ("kubectl", "require_approval")
    assert "context 'elsewhere'" in unparsed["reason"]


@pytest.mark.parametrize("args", [[], ["--shell", "ls", "--", "ls"]], ids=["neither", "both"])
def test_the_command_is_given_one_way(estate: KubeEstate, args: list[str]) -> None:
    done = envlabel(estate, "check-command", *args)
    assert done.returncode == 2
    assert "after -- " in done.stderr and "--shell 'CMD LINE'" in done.stderr


def test_options_after_the_program_belong_to_the_command(estate: KubeEstate) -> None:
    # no `--`: everything from the program on is the command's own (its --namespace, even a --json)
    done = envlabel(estate, "check-command", "kubectl", "delete", "deployment", "api", "--namespace", "scratch")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "k8s://prod-eu/scratch/deployments/api as sandbox" in done.stdout


def test_manifests_are_read_where_the_command_is_planned(estate: KubeEstate) -> None:
    manifest = estate.home / "deploy.yaml"
    manifest.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: payments\n")
    done = envlabel(estate, "check-command", "--json", "--", "kubectl", "delete", "-f", "deploy.yaml")
    assert done.returncode == 5
    assert [op["target"] for op in answer_of(done)["operations"]] == ["k8s://prod-eu/payments/deployments/api"]


# -- POST /v1/check-command ----------------------------------------------------------------------------------
def post(estate: KubeEstate, body: Any) -> httpx.Response:
    return httpx.post(f"{estate.envlabel}/v1/check-command", json=body, timeout=30)


def test_the_route_decides_a_line_or_an_argv(estate: KubeEstate) -> None:
    server = f"--server={estate.api_server}"  # the caller names the API server: the server's config names it
    by_line = post(estate, {"command": f"kubectl {server} delete deployment api -n payments"})
    assert by_line.status_code == 200, by_line.text
    body = by_line.json()
    assert body["decision"] == "deny"
    assert [op["target"] for op in body["operations"]] == ["k8s://prod-eu/payments/deployments/api"]
    assert body["operations"][0]["environment"] == "production"
    by_argv = post(estate, {"argv": ["kubectl", server, "delete", "deployment", "api", "-n", "scratch"]})
    assert by_argv.json()["decision"] == "allow"
    nothing = post(estate, {"command": "echo hello | wc -c"})
    assert nothing.json() == {"decision": "allow", "operations": [], "unparsed": []}


@pytest.mark.parametrize("body", [{}, {"command": "ls", "argv": ["ls"]}, {"command": ""}, {"argv": []},
                                  {"command": "ls", "extra": 1}, {"argv": "ls"}])
def test_the_route_refuses_a_body_that_is_not_one_command(estate: KubeEstate, body: dict[str, Any]) -> None:
    refused = post(estate, body)
    assert refused.status_code == 422
    assert refused.json()["error"] == "invalid request"


def test_the_server_reads_none_of_its_own_files_for_a_caller(estate: KubeEstate, tmp_path: Path) -> None:
    # the attack: name files on the server's disk, hoping their contents come back as targets
    secret = tmp_path / "server-side.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: do-not-leak\n  namespace: vault\n")
    variables = tmp_path / "server-side.sh"
    variables.write_text("NAME=leaked-name\n")
    for line in (f"kubectl --server={estate.api_server} delete -f {secret}",
                 f"kubectl --server={estate.api_server} apply -f - < {secret}",
                 f". {variables}; kubectl --server={estate.api_server} delete deployment $NAME -n payments",
                 f"kubectl --kubeconfig {estate.kubeconfig} delete deployment api -n scratch"):
        answer = post(estate, {"command": line, "environ": {"KUBECONFIG": str(estate.kubeconfig),
                                                            "HOME": str(estate.home)}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        text = json.dumps(body)
        assert "do-not-leak" not in text and "leaked-name" not in text and "vault" not in text
        assert body["decision"] != "allow", line  # not understood: decided fail closed
        assert body["unparsed"], line
    # the caller's KUBECONFIG and HOME were not used either: the server says where to check such a command
    assert any(SEALED_MESSAGE in u["reason"] for u in body["unparsed"])
    # the same line, checked where it runs, reads the file and finds the object
    local = envlabel(estate, "check-command", "--json", "--", "kubectl", "delete", "-f", str(secret))
    assert [op["target"] for op in answer_of(local)["operations"]] == ["k8s://prod-eu/vault/secrets/do-not-leak"]
