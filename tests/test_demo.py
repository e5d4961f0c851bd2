"""`envlabel demo` as a user runs it: a real subprocess, its in-process fakes (moto, a Kubernetes API
server, a GCP Resource Manager), a real SQLite file, and the commands it prints - CLI, curl, the SDK,
MCP over streamable HTTP and over stdio - run exactly as printed.

Two demo runs serve the whole file: one with ``--no-serve`` and one serving on a free port, each
shared by the tests that read its output (module-scoped fixtures)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import free_port, wait_for_http

ENVLABEL = str(Path(sys.executable).parent / "envlabel")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, serving: Served) -> tuple[Path, str]:
    """``envlabel demo --no-serve``; the serving demo (``serving``) builds its estate meanwhile."""
    directory = tmp_path_factory.mktemp("demo")
    (directory / "keep.txt").write_text("not the demo's")
    (directory / "envlabel.db").write_text("a stale store from an earlier run")  # started fresh
    proc = subprocess.run([ENVLABEL, "demo", "--no-serve", "--dir", str(directory)], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ), check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return directory, proc.stdout


def printed_command(output: str, comment: str) -> list[str]:
    """The command printed on the line after ``# <comment>``."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"# {comment}"):
            return shlex.split(lines[i + 1])
    raise AssertionError(f"no command printed after '# {comment}' in:\n{output}")


def run_printed(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def run_in_shell(command: str) -> subprocess.CompletedProcess[str]:
    """``command`` exactly as printed, pasted into a shell."""
    return subprocess.run(command, shell=True, executable="/bin/bash", capture_output=True, text=True,
                          timeout=60, check=False)


def printed_pairs(output: str, verb: str) -> list[tuple[str, list[str]]]:
    """Every ``# comment`` line followed by an envlabel ``verb`` command: (comment, argv)."""
    lines = output.splitlines()
    pairs = []
    for comment, command in itertools.pairwise(lines):
        argv = shlex.split(command) if comment.strip().startswith("# ") else []
        if verb in argv:
            pairs.append((comment.strip()[2:], argv))
    return pairs


def summaries(output: str) -> dict[str, str]:
    """source name -> its printed summary line ``NAME: complete``."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^(demo-[\w-]+): (.+)$", output, re.MULTILINE)}


def test_summary_shows_every_environment(demo_run: tuple[Path, str]) -> None:
    directory, output = demo_run
    counts = re.search(r"^\s+resources (\d+) \((.*)\)$", output, re.MULTILINE)
    assert counts is not None, output
    per_env = {env: int(n) for env, n in re.findall(r"(\w+) (\d+)", counts.group(2))}
    assert per_env.get("production", 0) > 0 and per_env.get("staging", 0) > 0 and per_env.get("sandbox", 0) > 0
    assert "complete" in output and "INCOMPLETE" not in output
    assert (directory / "keep.txt").read_text() == "not the demo's"  # only its own files are replaced


def test_printed_get_tells_the_twins_apart(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    production = printed_command(output, "the production orders-db")
    staging = printed_command(output, "its staging twin")
    assert production[-2] == staging[-2] == "get"
    prod_arn, staging_arn = production[-1], staging[-1]
    # the same name and shape, told apart only by where they live
    assert prod_arn.endswith(":db:orders-db") and staging_arn.endswith(":db:orders-db") and prod_arn != staging_arn
    answers = {}
    for argv in (production, staging):
        proc = run_printed(argv)
        assert proc.returncode == 0, proc.stderr
        answers[argv[-1]] = proc.stdout.splitlines()[0]
    assert answers[prod_arn] == f"{prod_arn}: production"
    assert answers[staging_arn] == f"{staging_arn}: staging"


def test_summary_shows_aws_kubernetes_and_gcp_sources(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    for source, provider in (("demo-aws", "aws"), ("demo-k8s", "kubernetes"), ("demo-gcp", "gcp")):
        assert f"scanning {source} ({provider}) ..." in output, output
        assert summaries(output).get(source) == "complete", output
    k8s = re.search(r"^demo-k8s: complete\n\s+resources (\d+) \((.*)\)$", output, re.MULTILINE)
    # the cluster hangs under the production EKS cluster: everything in it inherits production
    assert k8s is not None and k8s.group(2) == f"production {k8s.group(1)}", output


def test_every_printed_get_answers_what_its_comment_says(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    answers = {}
    for comment, argv in printed_pairs(output, "get"):
        proc = run_printed(argv)
        assert proc.returncode == 0, proc.stderr
        first = proc.stdout.splitlines()[0]
        expected = comment.rpartition(": ")[2]
        assert first.partition(": ")[2].split()[0] == expected, (comment, proc.stdout)
        answers[argv[-1]] = first.partition(": ")[2]
    # what the estate is built to show, independent of what the demo printed about it
    assert answers["k8s://orders-eks/orders/deployments/orders-api"] == "production"
    assert answers["k8s://orders-eks/orders-preview/deployments/orders-api"] == "production [conflict]"
    assert answers["projects/orders-prod"] == "production [conflict]"
    assert answers["projects/ml-playground"] == "sandbox"
    assert answers["projects/shared-logging"] == "unknown"


def test_printed_checks_deny_require_approval_and_allow(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    decided = []
    for comment, argv in printed_pairs(output, "check"):
        proc = run_printed(argv)
        decision = proc.stdout.split(":")[0]
        assert comment.endswith(f"{decision} (exit {proc.returncode})"), (comment, proc.stdout, proc.stderr)
        decided.append((argv[-1], decision, proc.returncode))
    prod_db, staging_db, sandbox_api, k8s, sandbox_vm, prod_vm = decided
    assert prod_db[0].endswith(":db:orders-db") and prod_db[1:] == ("deny", 5)
    assert staging_db[0].endswith(":db:orders-db") and staging_db[1:] == ("require_approval", 4)
    assert sandbox_api[0].endswith(":function:orders-api") and sandbox_api[1:] == ("allow", 0)
    assert k8s == ("k8s://orders-eks/orders/deployments/orders-api", "deny", 5)
    # below a sandbox GCP project: the unlabeled VM inherits sandbox, the one labeled env=prod is production
    vm = "//compute.googleapis.com/projects/ml-playground/zones/us-central1-a/instances/"
    assert sandbox_vm == (vm + "vm1", "allow", 0)
    assert prod_vm == (vm + "trainer", "deny", 5)


def test_printed_audit_reports_the_conflicts_of_every_provider(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    proc = run_printed(printed_command(output, "conflicts, unlabeled and messy tags"))
    assert proc.returncode == 0, proc.stderr
    conflicts = {line.split()[-1] for line in proc.stdout.splitlines() if line.strip().startswith("conflict ")}
    assert "k8s://orders-eks/namespaces/orders-preview" in conflicts, proc.stdout
    assert "//cloudresourcemanager.googleapis.com/projects/orders-prod" in conflicts, proc.stdout
    assert any(c.endswith(":db:orders-replica") for c in conflicts), proc.stdout


def test_printed_mcp_stdio_config_answers_an_mcp_client(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    lines = output.splitlines()
    snippet = json.loads(lines[lines.index(next(x for x in lines if "MCP server over stdio" in x)) + 1])
    server = snippet["mcpServers"]["envlabel"]
    deny = printed_pairs(output, "check")[0][1]
    answers: dict[str, object] = {}

    async def main() -> None:  # as a desktop agent runs it: the command and args, nothing else
        async with Client(StdioServerParameters(command=server["command"], args=server["args"])) as client:
            result = await client.call_tool("check_action", {"target": deny[-1], "action": deny[-2]})
            answers.update(result.structured_content or {})

    anyio.run(main)
    assert (answers["decision"], answers["environment"]) == ("deny", "production")


def test_printed_list_and_fail_closed_account(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    listing = run_printed(printed_command(output, "everything production"))
    assert listing.returncode == 0, listing.stderr
    header, *rows = [line.split() for line in listing.stdout.splitlines()[:-1]]
    assert header == ["ENVIRONMENT", "KIND", "NAME", "TARGET"]
    assert rows and all(row[0] == "production" for row in rows)
    unknown = run_printed(printed_command(output, "an account with no usable signal"))
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stdout.splitlines()[0].endswith(": unknown")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    port: int
    stderr: Path
    printed: str = ""


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``envlabel demo`` serving on a free port, started (not yet waited for)."""
    directory = tmp_path_factory.mktemp("served")
    port = free_port()
    stderr = directory / "stderr.log"
    with stderr.open("w") as errors:
        proc = subprocess.Popen([ENVLABEL, "demo", "--dir", str(directory / "demo"), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        yield Served(proc, port, stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(serving: Served) -> Served:
    """The serving demo once its next steps are printed and its API answers."""
    if not serving.printed:
        assert serving.proc.stdout is not None
        printed: list[str] = []
        for line in serving.proc.stdout:  # the demo prints its next steps, ending with the MCP example, then serves
            printed.append(line)
            if line.rstrip("\n") == "EOF":
                break
        serving.printed = "".join(printed)
    url = f"http://127.0.0.1:{serving.port}"
    assert f"The daemon and its API serve on {url} until Ctrl-C:" in serving.printed, (
        serving.printed + serving.stderr.read_text())
    wait_for_http(f"{url}/v1/label?target=123456789012", serving.proc)  # type: ignore[arg-type]
    return serving


def served_line(served: Served, after: str, offset: int = 1) -> str:
    lines = served.printed.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(after))
    return lines[index + offset].strip()


def test_printed_curl_commands_answer_as_printed(served: Served) -> None:
    label_curl = served_line(served, "The daemon and its API serve on")
    assert shlex.split(label_curl)[:2] == ["curl", "-s"]
    label = run_in_shell(label_curl)
    assert label.returncode == 0, label.stderr
    body = json.loads(label.stdout)
    assert body["target"].endswith(":db:orders-db")
    assert (body["environment"], body["found"]) == ("production", True)
    check = run_in_shell(served_line(served, "The daemon and its API serve on", 2))
    assert check.returncode == 0, check.stderr
    decision = json.loads(check.stdout)
    assert (decision["target"], decision["decision"], decision["action"]) == (
        body["target"], "deny", "rds:DeleteDBInstance")
    with urllib.request.urlopen(shlex.split(label_curl)[2], timeout=10) as response:  # not only curl
        assert json.load(response)["environment"] == "production"


def test_printed_sdk_example_answers_as_printed(served: Served) -> None:
    proc = run_in_shell(served_line(served, "  # the Python SDK"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "deny\n"


def test_printed_mcp_example_answers_over_streamable_http(served: Served) -> None:
    lines = served.printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("<<'EOF'"))
    heredoc = "\n".join(lines[start:lines.index("EOF", start) + 1]) + "\n"
    assert "/mcp" in heredoc and "check_action" in heredoc
    proc = run_in_shell(heredoc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "deny\n"


def test_demo_stops_cleanly_on_ctrl_c(served: Served) -> None:
    """Last in the file: it ends the shared serving demo."""
    served.proc.send_signal(signal.SIGINT)
    rest, _ = served.proc.communicate(timeout=90)
    assert served.proc.returncode == 0, served.stderr.read_text()
    assert "demo stopped" in rest
