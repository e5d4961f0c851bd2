"""The gcloud and curl/wget/HTTPie readers of envlabel.commands: argv -> the operations the check decides.

gcloud against a gcloud configuration directory written in tmp_path; the HTTP clients against envlabel's
clusters, a kubeconfig, AWS and Google endpoints; then the real curl and wget binaries against the fake
Kubernetes API server over HTTP: every mutating request they really send, read as the Kubernetes guard reads it,
must be an operation the reader found, so the reader's reading of their options is held against the programs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from envlabel.commands import CommandContext, Operation, Unparsed, unknown
from envlabel.commands import gcloud as gcloud_reader
from envlabel.commands import http as http_reader
from envlabel.commands.k8s import api_request
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster
from tests.kubernetes_cluster import seed_payments

PROD = "https://10.0.0.1:6443"


@pytest.fixture
def ctx(tmp_path: Path) -> CommandContext:
    configurations = tmp_path / ".config" / "gcloud" / "configurations"
    configurations.mkdir(parents=True)
    (configurations / "config_default").write_text("[core]\nproject = sbx-proj\naccount = me@example.com\n")
    (configurations / "config_prod").write_text("[core]\nproject = prod-proj\n")
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(json.dumps({
        "current-context": "lab", "clusters": [{"name": "lab", "cluster": {"server": "https://lab.example:6443"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab"}}]}))
    return CommandContext({"HOME": str(tmp_path)}, str(tmp_path), clusters_by_server={PROD: "prod-eu"})


def ops(reader: object, line: str, context: CommandContext) -> list[tuple[str, str, bool]]:
    found = reader.read(shlex.split(line), context)  # type: ignore[attr-defined]
    assert all(isinstance(f, Operation) for f in found), found
    return [(f.target, f.action, f.contents) for f in found]


def unparsed(reader: object, argv: list[str], context: CommandContext) -> Unparsed:
    found = reader.read(argv, context)  # type: ignore[attr-defined]
    assert len(found) == 1 and isinstance(found[0], Unparsed), found
    return found[0]


GCLOUD = [
    ("gcloud projects delete prod-proj --quiet", [("projects/prod-proj", "resourcemanager.projects.delete", True)]),
    ("gcloud projects describe prod-proj", []),
    ("gcloud projects list --filter=name:prod", []),
    ("gcloud projects update prod-proj --name 'Prod'", [("projects/prod-proj", "resourcemanager.projects.update",
                                                        False)]),
    ("gcloud projects add-iam-policy-binding prod-proj --member=user:a@b.c --role=roles/owner",
     [("projects/prod-proj", "resourcemanager.projects.setIamPolicy", False)]),
    ("gcloud projects create new-proj --folder 123", [("folders/123", "resourcemanager.projects.create", False)]),
    ("gcloud projects create new-proj", [("projects/new-proj", "resourcemanager.projects.create", False)]),
    ("gcloud beta projects move prod-proj --organization 42",
     [("projects/prod-proj", "resourcemanager.projects.move", False),
      ("organizations/42", "resourcemanager.projects.move", False)]),
    ("gcloud resource-manager folders delete 456", [("folders/456", "resourcemanager.folders.delete", True)]),
    ("gcloud resource-manager folders create --display-name x --organization 42",
     [("organizations/42", "resourcemanager.folders.create", False)]),
    ("gcloud organizations add-iam-policy-binding 42 --member=user:a@b.c --role=roles/viewer",
     [("organizations/42", "resourcemanager.organizations.setIamPolicy", False)]),
    # a resource of a group envlabel knows: its full name, the permission the call needs
    ("gcloud compute instances delete vm-1 --zone us-east1-b --project prod-proj",
     [("//compute.googleapis.com/projects/prod-proj/zones/us-east1-b/instances/vm-1", "compute.instances.delete",
       True)]),
    ("gcloud compute instances delete vm-1 --zone=us-east1-b",
     [("//compute.googleapis.com/projects/sbx-proj/zones/us-east1-b/instances/vm-1", "compute.instances.delete",
       True)]),
    ("gcloud --configuration prod sql instances patch db --tier db-f1-micro",
     [("//cloudsql.googleapis.com/projects/prod-proj/instances/db", "cloudsql.instances.update", False)]),
    ("gcloud compute instances list", []),
    ("gcloud container clusters get-credentials prod --region us", []),
    ("gcloud alpha run deploy api --image gcr.io/x/y --project prod-proj", [("projects/prod-proj", "update", False)]),
    # no --region: any service named api in the project, so its contents decide
    ("gcloud run services delete api --project prod-proj", [("projects/prod-proj", "run.services.delete", True)]),
    ("gcloud compute ssh vm-1 --project prod-proj", [("projects/prod-proj", "update", False)]),
    ("gcloud secrets versions access latest --secret db", [("projects/sbx-proj", "update", False)]),
    ("gcloud builds submit --tag gcr.io/x/y", [("projects/sbx-proj", "create", False)]),
    # a full resource name says its project; the configured one does not matter then
    ("gcloud pubsub topics delete projects/prod-proj/topics/t",
     [("//pubsub.googleapis.com/projects/prod-proj/topics/t", "pubsub.topics.delete", True)]),
    ("gcloud logging sinks delete s --folder 456", [("folders/456", "delete", False)]),
    ("gcloud compute instances frobnicate vm-1 --project prod-proj",
     [("projects/prod-proj", "gcloud compute instances frobnicate vm-1", False)]),
    ("gcloud config set project prod-proj", []),
    ("gcloud auth login", []),
    ("gcloud version", []),
    ("gcloud", []),
]


@pytest.mark.parametrize(("line", "expected"), GCLOUD)
def test_gcloud_commands_act_on_their_container(ctx: CommandContext, line: str,
                                                expected: list[tuple[str, str, bool]]) -> None:
    assert ops(gcloud_reader, line, ctx) == expected


def test_an_unknown_gcloud_verb_is_passed_so_the_check_decides_it_as_a_delete(ctx: CommandContext) -> None:
    from envlabel.actions import classify

    [(_, action, _)] = ops(gcloud_reader, "gcloud compute instances frobnicate vm-1", ctx)
    assert classify(action).action_class == "delete" and not classify(action).recognized
    for generic, cls in (("create", "create"), ("update", "modify"), ("delete", "delete")):
        assert classify(generic).action_class == cls


def test_the_project_comes_from_the_flag_the_environment_then_the_active_configuration(ctx: CommandContext,
                                                                                       tmp_path: Path) -> None:
    line = "gcloud compute instances delete vm-1"
    env = dict(ctx.environ)
    assert ops(gcloud_reader, line, ctx)[0][0] == "projects/sbx-proj"
    (tmp_path / ".config" / "gcloud" / "active_config").write_text("prod\n")
    assert ops(gcloud_reader, line, ctx)[0][0] == "projects/prod-proj"
    named = CommandContext({**env, "CLOUDSDK_ACTIVE_CONFIG_NAME": "default"}, ctx.cwd)
    assert ops(gcloud_reader, line, named)[0][0] == "projects/sbx-proj"
    overridden = CommandContext({**env, "CLOUDSDK_CORE_PROJECT": "env-proj"}, ctx.cwd)
    assert ops(gcloud_reader, line, overridden)[0][0] == "projects/env-proj"
    assert ops(gcloud_reader, line + " --project=flag-proj", overridden)[0][0] == "projects/flag-proj"
    elsewhere = CommandContext({**env, "CLOUDSDK_CONFIG": str(tmp_path / "none")}, ctx.cwd)
    assert "no project" in unparsed(gcloud_reader, shlex.split(line), elsewhere).reason


@pytest.mark.parametrize(("argv", "reason", "scope"), [
    (["gcloud", "storage", "rm", "gs://prod-*/x"], "pattern", ""),
    (["gcloud", "--weird", "x", "compute", "instances", "delete", "vm"], "--weird", "projects/sbx-proj"),
    (["gcloud", "projects", "delete"], "names no project", ""),
    (["gcloud", "projects", "delete", unknown("$P")], "computed when the command runs", ""),
    (["gcloud", "compute", "instances", "delete", "vm", "--project", unknown("$P")], "computed", ""),
    (["gcloud", "compute", "instances", "delete", "vm", "--flags-file", "f.yaml"], "--flags-file", "projects/sbx-proj"),
    (["gcloud", "compute", "instances", "delete", "vm", "--project", "google.com:legacy"], "not a GCP resource", ""),
])
def test_what_gcloud_cannot_read_is_unparsed(ctx: CommandContext, argv: list[str], reason: str, scope: str) -> None:
    found = unparsed(gcloud_reader, argv, ctx)
    assert reason in found.reason and found.scope == scope


def test_a_gcloud_verb_after_a_computed_word_is_not_trusted(ctx: CommandContext) -> None:
    [(target, action, _)] = ops(gcloud_reader, shlex.join(["gcloud", "compute", unknown("$WHAT"), "list"]), ctx)
    assert target == "projects/sbx-proj" and action == "gcloud compute $WHAT list"
    assert gcloud_reader.changes_configuration(["gcloud", "config", "set", "project", "prod-proj"])
    assert gcloud_reader.changes_configuration(["gcloud", "config", "configurations", "activate", "prod"])
    assert not gcloud_reader.changes_configuration(["gcloud", "config", "list"])


K = "k8s://prod-eu"


HTTP = [
    (f"curl -X DELETE {PROD}/apis/apps/v1/namespaces/payments/deployments/api",
     [(f"{K}/payments/deployments/api", "delete", False)]),
    (f"curl -sSkXDELETE {PROD}/api/v1/namespaces/payments", [(f"{K}/namespaces/payments", "delete", True)]),
    ("curl --request=PATCH -d {} 10.0.0.1:6443/apis/apps/v1/namespaces/payments/deployments/api",
     [(f"{K}/payments/deployments/api", "patch", False)]),
    (f"curl -k -H 'Authorization: Bearer x' -d @cm.json {PROD}/api/v1/namespaces/payments/configmaps",
     [(f"{K}/namespaces/payments", "create", False)]),
    (f"curl -G -d watch=1 {PROD}/api/v1/namespaces/payments/pods", []),
    (f"curl {PROD}/api/v1/namespaces/payments/secrets/db", [(f"{K}/payments/secrets/db", "get secrets", False)]),
    (f"curl {PROD}/api/v1/secrets", [(K, "list secrets", True)]),
    (f"curl -I {PROD}/api/v1/namespaces/payments/secrets/db", []),
    (f"curl -T cm.json {PROD}/api/v1/namespaces/payments/configmaps/cfg", [(f"{K}/payments/configmaps/cfg", "update",
                                                                           False)]),
    (f"curl -s {PROD}/version --next -X DELETE {PROD}/api/v1/nodes/node-1", [(f"{K}/nodes/node-1", "delete", False)]),
    (f"curl -X POST {PROD}/api/v1/namespaces/payments/pods/api-0/exec?command=sh",
     [(f"{K}/payments/pods/api-0", "create pods/exec", False)]),
    ("curl --resolve example.com:6443:10.0.0.1 -X DELETE https://example.com:6443/api/v1/nodes/n1",
     [(f"{K}/nodes/n1", "delete", False)]),
    ("curl --connect-to ::10.0.0.1:6443 -X DELETE https://example.com/api/v1/nodes/n1",
     [(f"{K}/nodes/n1", "delete", False)]),
    ("curl -X DELETE https://[::ffff:10.0.0.1]:6443/api/v1/nodes/n1", [(f"{K}/nodes/n1", "delete", False)]),
    (f"curl -X DELETE {PROD}/api/v1/namespaces/a/pods/../../../namespaces/kube-system",
     [(f"{K}/namespaces/kube-system", "delete", True)]),
    ("curl -X DELETE https://lab.example:6443/api/v1/namespaces/x/pods/p", [("k8s://lab/x/pods/p", "delete", False)]),
    (f"wget -q -O - --method=DELETE {PROD}/api/v1/namespaces/payments/pods/x", [(f"{K}/payments/pods/x", "delete",
                                                                                 False)]),
    (f"wget --post-data=x {PROD}/api/v1/namespaces/payments/configmaps", [(f"{K}/namespaces/payments", "create",
                                                                           False)]),
    ("http DELETE 10.0.0.1:6443/api/v1/namespaces/payments/pods/x", [(f"{K}/payments/pods/x", "delete", False)]),
    ("https --verify=no 10.0.0.1:6443/api/v1/namespaces/payments/configmaps name=x",
     [(f"{K}/namespaces/payments", "create", False)]),
    ("xh --offline DELETE 10.0.0.1:6443/api/v1/nodes/n1", []),
    ("curl -X DELETE https://cloudresourcemanager.googleapis.com/v3/projects/prod-proj",
     [("projects/prod-proj", "delete", True)]),
    ("curl -X PATCH https://sqladmin.googleapis.com/v1/projects/prod-proj/instances/db",
     [("projects/prod-proj", "update", False)]),
    ("curl https://compute.googleapis.com/compute/v1/projects/prod-proj/zones", []),
    ("curl -s https://example.com/install.sh", []),
    ("curl -X POST -d '{}' https://api.github.com/repos/o/r/issues", []),
    ("curl -fsSL https://s3.amazonaws.com/bucket/file.tgz -o f.tgz", []),
    ("curl -X DELETE http://localhost:8080/items/1", []),
]


@pytest.mark.parametrize(("line", "expected"), HTTP)
def test_http_requests_read_as_operations(ctx: CommandContext, line: str,
                                          expected: list[tuple[str, str, bool]]) -> None:
    assert ops(http_reader, line, ctx) == expected


@pytest.mark.parametrize(("argv", "reason", "scope"), [
    (["curl", "-X", "DELETE", f"{PROD}/api/v1/namespaces/{{a,b}}"], "expands", K),
    (["curl", "-X", "POST", "http://localhost:8001/api/v1/namespaces/x/pods"], "kubectl proxy", ""),
    (["curl", "localhost:8001/api/v1/namespaces/x/secrets"], "Kubernetes API request", ""),
    (["curl", "-X", "POST", "-d", "Action=TerminateInstances", "https://ec2.amazonaws.com/"], "use the aws CLI", ""),
    (["curl", "https://ec2.us-east-1.amazonaws.com/?Action=TerminateInstances&InstanceId.1=i-1"], "aws CLI", ""),
    (["curl", "-X", "POST", "https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances/vm/stop"],
     "use gcloud", ""),
    (["curl", "-K", "request.cfg"], "-K", ""),
    (["curl", "-X", "DELETE", unknown("$URL")], "computed when the command runs", ""),
    (["curl", "-X", "DELETE", f"{PROD}/api/v1/namespaces/{unknown('$NS')}"], "computed", K),
    (["wget", "--method=DELETE", "-i", "urls.txt"], "-i", ""),
    (["wget", "-e", "method=DELETE", f"{PROD}/api/v1/nodes/n1"], "-e", ""),
])
def test_what_an_http_client_cannot_read_is_unparsed(ctx: CommandContext, argv: list[str], reason: str,
                                                     scope: str) -> None:
    found = unparsed(http_reader, argv, ctx)
    assert reason in found.reason and found.scope == scope


def test_a_method_computed_at_run_time_is_the_strictest(ctx: CommandContext) -> None:
    line = shlex.join(["curl", "-X", unknown("$M"), f"{PROD}/api/v1/namespaces/payments/pods/x"])
    assert ops(http_reader, line, ctx) == [(f"{K}/payments/pods/x", "delete", False)]
    assert ops(http_reader, shlex.join(["curl", unknown("$URL")]), ctx) == []  # a read of an unknown address


# -- the real curl and wget ---------------------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, str, CommandContext]]:
    url, fake = start_fake_cluster()
    fake.define("", "v1", "pods", "Pod")
    seed_payments(fake)
    (tmp_path / "cm.json").write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "new"}, "data": {"a": "b"}}))
    try:
        yield fake, url, CommandContext({"HOME": str(tmp_path)}, str(tmp_path), clusters_by_server={url: "prod-eu"})
    finally:
        fake.stop()


@pytest.mark.parametrize("line", [
    "curl -s -X DELETE {url}/apis/apps/v1/namespaces/payments/deployments/api",
    "curl -sXDELETE {url}/api/v1/namespaces/scratch",
    "curl -s --request PATCH -H 'Content-Type: application/merge-patch+json' -d '{{}}' "
    "{url}/apis/apps/v1/namespaces/payments/deployments/api",
    "curl -s -H 'Content-Type: application/json' -d @cm.json {url}/api/v1/namespaces/payments/configmaps",
    "curl -s -T cm.json {url}/api/v1/namespaces/payments/configmaps/api",
    "curl -s -o /dev/null {url}/version --next -X DELETE {url}/api/v1/nodes/node-1",
    "curl -s --resolve fake.invalid:{port}:127.0.0.1 -X DELETE http://fake.invalid:{port}/api/v1/namespaces/scratch",
    "curl -s {url}/api/v1/namespaces/payments/secrets/db-password",
    "wget -q -O - --method=DELETE {url}/apis/apps/v1/namespaces/payments/deployments/api",
    "wget -q -O - --header=Content-Type:application/json --post-file=cm.json "
    "{url}/api/v1/namespaces/payments/configmaps",
])
def test_the_reader_covers_every_request_the_real_client_sends(cluster: tuple[FakeKubernetes, str, CommandContext],
                                                               line: str) -> None:
    fake, url, context = cluster
    argv = shlex.split(line.format(url=url, port=url.rsplit(":", 1)[1]))
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    found = http_reader.read(argv, context)
    assert found and all(isinstance(f, Operation) for f in found), found
    fake.requests.clear()
    subprocess.run(argv, cwd=context.cwd, capture_output=True, timeout=60, check=False)
    effects = [api_request("prod-eu", r.method, r.path) for r in fake.requests]
    checked = [e for e in effects if e is not None]
    assert checked, f"{argv[0]} sent nothing the guard checks: {fake.requests}"
    assert {(e.target, e.action) for e in checked} <= {(f.target, f.action) for f in found if isinstance(f, Operation)}


def test_every_action_and_target_read_is_one_the_check_accepts() -> None:
    """Only a verb envlabel does not know is passed unrecognized (decided as a delete); every target parses."""
    from envlabel.actions import classify
    from envlabel.targets import parse_target

    for line, expected in GCLOUD + HTTP:
        for target, action, _ in expected:
            assert classify(action).recognized or "frobnicate" in line, action
            parse_target(target)
