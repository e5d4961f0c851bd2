"""The coding-agent hooks (``envlabel hook claude-code|codex``), run as the agents run them: a real process fed
the PreToolUse JSON on stdin, answering on stdout, checking with the real envlabel API over a real socket; the
commands are kubectl's against the fake Kubernetes API server's estate (tests/shell_estate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envlabel.service.demo.fakes.kubernetes_api import write_kubeconfig
from tests.conftest import free_port
from tests.shell_estate import ENVLABEL, KubeEstate, bash_call, kube_estate, run_hook

AGENTS = ("claude-code", "codex")


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[KubeEstate]:
    with kube_estate(tmp_path) as built:
        yield built


@pytest.fixture
def nowhere() -> str:
    """An envlabel URL where nothing listens: a hook that asks it is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("command", [
    "ls -la && git status | head -5",
    "python3 -m pytest -q tests/test_x.py; echo done",
    "grep -rn 'kubectl delete' docs/ || true",  # the tool's name in an argument is not a run of the tool
    "cat <<'EOF' > notes.md\naws rds delete-db-instance is how\nEOF",
])
def test_a_command_that_runs_no_infrastructure_tool_is_answered_without_envlabel(agent: str, command: str,
                                                                                 tmp_path: Path,
                                                                                 nowhere: str) -> None:
    answer = run_hook(agent, bash_call(command, tmp_path), {"ENVLABEL_URL": nowhere, "HOME": str(tmp_path)})
    # nothing listens at ENVLABEL_URL, and yet no deny: envlabel was never asked
    assert (answer.returncode, answer.stdout, answer.stderr) == (0, "", "")


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("tool", ["Edit", "Write", "Read", "mcp__github__create_issue"])
def test_other_tools_get_no_opinion(agent: str, tool: str, tmp_path: Path, nowhere: str) -> None:
    call = bash_call("kubectl delete namespace payments", tmp_path, tool=tool)
    answer = run_hook(agent, call, {"ENVLABEL_URL": nowhere})
    assert (answer.returncode, answer.stdout) == (0, "")


def test_the_hook_of_an_unrelated_command_loads_no_cli_http_client_or_config(tmp_path: Path) -> None:
    # the entry point goes straight to envlabel.hooks: what a non-infrastructure command costs is the planner
    probe = ("import atexit, sys\n"
             "heavy = ('click', 'pydantic', 'httpx', 'yaml', 'envlabel.config', 'envlabel.client', "
             "'envlabel.service.cli')\n"
             "atexit.register(lambda: print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr))\n"
             "sys.argv = ['envlabel', 'hook', 'claude-code']\n"
             "from envlabel.service.entry import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", probe], input=json.dumps(bash_call("make test", tmp_path)),
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr.strip()) == (0, "", "[]")


def test_claude_code_is_told_deny_ask_or_nothing_by_environment(estate: KubeEstate) -> None:
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file))
    denied = run_hook("claude-code", bash_call("kubectl delete deployment api -n payments", estate.home), env)
    assert (denied.returncode, denied.decision) == (0, "deny")
    hook_output = denied.json["hookSpecificOutput"]  # type: ignore[index]
    assert hook_output["hookEventName"] == "PreToolUse"
    reason = denied.reason
    # the environment, the evidence, and what to do, for the model to read
    assert "k8s://prod-eu/payments/deployments/api, which is production" in reason
    assert "environment=production on k8s:namespaces payments" in reason
    assert "do not retry this command or work around it" in reason

    asked = run_hook("claude-code", bash_call("kubectl delete deployment api -n payments-stg", estate.home), env)
    assert asked.decision == "ask"
    assert "which is staging (approvers: payments-oncall)" in asked.reason

    # sandbox: envlabel allows it, and says nothing, so Claude Code's own permission rules still apply
    allowed = run_hook("claude-code", bash_call("kubectl delete deployment api -n scratch", estate.home), env)
    assert (allowed.returncode, allowed.stdout) == (0, "")
    # the hook only decides: nothing was deleted anywhere
    assert all(estate.deployments(ns) == {"api"} for ns in ("payments", "payments-stg", "scratch"))


def test_the_strictest_operation_of_a_line_decides_it(estate: KubeEstate) -> None:
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file))
    line = "kubectl get pods -n scratch && kubectl delete deployment api -n scratch; kubectl delete ns payments-stg"
    answer = run_hook("claude-code", bash_call(line, estate.home), env)
    assert answer.decision == "ask"
    assert "k8s://prod-eu/namespaces/payments-stg, which is staging" in answer.reason
    assert "k8s://prod-eu/scratch/deployments/api, which is sandbox" in answer.reason


def test_codex_cannot_ask_so_approval_becomes_a_deny_that_says_how_to_get_it(estate: KubeEstate) -> None:
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file))
    staging = run_hook("codex", bash_call("kubectl delete deployment api -n payments-stg", estate.home), env)
    assert (staging.returncode, staging.decision) == (0, "deny")
    assert "payments-oncall" in staging.reason
    assert "Codex hooks cannot ask for approval, so the command was not run" in staging.reason
    production = run_hook("codex", bash_call("kubectl delete deployment api -n payments", estate.home), env)
    assert production.decision == "deny"
    assert "cannot ask" not in production.reason  # a deny is a deny, not a missing approval
    sandbox = run_hook("codex", bash_call("kubectl delete deployment api -n scratch", estate.home), env)
    assert (sandbox.returncode, sandbox.stdout) == (0, "")  # Codex reads "allow" as unsupported: say nothing


def test_the_cluster_is_named_by_envlabels_config_not_the_agents_kubeconfig(estate: KubeEstate) -> None:
    call = bash_call("kubectl delete deployment api -n scratch", estate.home)
    # --config: the source's API server is the agent's, so the agent's context "agent" is cluster prod-eu
    by_flag = run_hook("claude-code", call, estate.environ(), "--config", str(estate.config_file))
    assert (by_flag.returncode, by_flag.stdout) == (0, "")
    # without a config the kubeconfig's own cluster name is all there is: never seen, so production
    unmapped = run_hook("claude-code", call, estate.environ())
    assert unmapped.decision == "deny"
    assert "k8s://agent-cluster/scratch/deployments/api, which is production" in unmapped.reason


def test_what_cannot_be_understood_needs_approval(estate: KubeEstate) -> None:
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file))
    answer = run_hook("claude-code", bash_call("kubectl --context nowhere delete deployment api -n payments",
                                               estate.home), env)
    assert answer.decision == "ask"
    assert "could not be understood" in answer.reason
    assert "context 'nowhere'" in answer.reason


@pytest.mark.parametrize("agent", AGENTS)
def test_envlabel_unreachable_is_a_deny_unless_fail_open(agent: str, tmp_path: Path, nowhere: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "https://10.0.0.1:6443", context="prod-eu")
    call = bash_call("kubectl delete deployment api -n payments", tmp_path)
    env = {"ENVLABEL_URL": nowhere, "KUBECONFIG": str(kubeconfig)}
    answer = run_hook(agent, call, env)
    assert (answer.returncode, answer.decision) == (0, "deny")
    assert "envlabel did not answer, so this command was not run" in answer.reason
    opened = run_hook(agent, call, {**env, "ENVLABEL_FAIL_OPEN": "1"})
    assert opened.returncode == 0 and opened.decision is None
    assert "ENVLABEL_FAIL_OPEN is set" in opened.json["systemMessage"]  # type: ignore[index]


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("stdin", ["not json", "[1, 2]", json.dumps({"tool_name": "Bash", "tool_input": {}}),
                                   json.dumps({"tool_name": "Bash", "tool_input": {"command": 7}}),
                                   json.dumps({"tool_name": "Bash", "tool_input": {"command": ["aws", 7]}})])
def test_a_call_that_cannot_be_read_is_denied(agent: str, stdin: str, nowhere: str) -> None:
    answer = run_hook(agent, stdin, {"ENVLABEL_URL": nowhere})
    assert (answer.returncode, answer.decision) == (0, "deny")
    assert answer.reason


def test_a_usage_error_exits_2_which_both_agents_read_as_block() -> None:
    done = subprocess.run([ENVLABEL, "hook", "cursor"], input="{}", capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert "agents: claude-code, codex" in done.stderr


# -- install -------------------------------------------------------------------------------------------
def install(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENVLABEL, "hook", "install", *args], capture_output=True, text=True, timeout=60,
                          check=False, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


def test_install_prints_the_entry_and_says_where_it_goes(tmp_path: Path) -> None:
    printed = install("claude-code", home=tmp_path)
    assert printed.returncode == 0, printed.stderr
    entry = json.loads(printed.stdout)["hooks"]["PreToolUse"][0]
    assert entry["matcher"] == "Bash"
    assert entry["hooks"][0]["type"] == "command"
    assert entry["hooks"][0]["command"] == f"{Path(ENVLABEL).resolve()} hook claude-code"
    assert f"add this to {tmp_path}/.claude/settings.json" in printed.stderr
    assert not (tmp_path / ".claude").exists()


def test_install_write_merges_keeps_other_entries_and_is_idempotent(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    other = {"matcher": "Bash", "hooks": [{"type": "command", "command": "./lint-commands.sh"}]}
    settings.write_text(json.dumps({"model": "opus", "hooks": {"PreToolUse": [other],
                                                               "PostToolUse": [{"hooks": []}]}}))
    for _ in range(2):
        done = install("claude-code", "--write", "--settings", str(settings), "--url", "http://envlabel:8080",
                       home=tmp_path)
        assert done.returncode == 0, done.stderr
    merged = json.loads(settings.read_text())
    assert merged["model"] == "opus"
    assert merged["hooks"]["PostToolUse"] == [{"hooks": []}]
    groups = merged["hooks"]["PreToolUse"]
    assert groups[0] == other
    assert len(groups) == 2  # one envlabel entry however often it is installed
    assert groups[1]["hooks"][0]["command"].endswith("hook claude-code --url http://envlabel:8080")


def test_install_refuses_settings_it_cannot_merge_and_leaves_them_alone(tmp_path: Path) -> None:
    settings = tmp_path / "hooks.json"
    for text in ("[]", "{not json", json.dumps({"hooks": {"PreToolUse": {"matcher": "Bash"}}})):
        settings.write_text(text)
        done = install("codex", "--write", "--settings", str(settings), home=tmp_path)
        assert done.returncode == 2
        assert str(settings) in done.stderr
        assert settings.read_text() == text


def test_the_installed_command_is_a_working_hook(estate: KubeEstate) -> None:
    settings = estate.home / ".codex" / "hooks.json"
    done = install("codex", "--write", home=estate.home)
    assert done.returncode == 0, done.stderr
    assert "review and trust" in done.stdout
    command = json.loads(settings.read_text())["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    env = estate.environ(ENVLABEL_CONFIG=str(estate.config_file))
    for line, expected in (("kubectl delete deployment api -n payments", "deny"), ("ls", None)):
        # the agent runs the command through its shell, the call on stdin
        ran = subprocess.run(["/bin/sh", "-c", command], input=json.dumps(bash_call(line, estate.home)),
                             capture_output=True, text=True, env=env, timeout=120, check=False)
        assert ran.returncode == 0, ran.stderr
        decision = json.loads(ran.stdout)["hookSpecificOutput"]["permissionDecision"] if ran.stdout else None
        assert decision == expected


# -- the pre-filter: a line that cannot run a tool is answered without the planner ---------------------------
def test_the_pre_filter_knows_every_program_the_planner_reads() -> None:
    from envlabel.commands import READERS
    from envlabel.hooks import TOOL_PROGRAMS

    assert set(TOOL_PROGRAMS) == set(READERS)


WORDS = ["aws", "kubectl", "helm", "gcloud", "curl", "terraform", "k", "ku", "bectl", "delete", "rds", "pod",
         "git", "ls", "grep", "echo", "-n", "prod", "x", "$K", "$(echo", ")", "`", "{a,b}", "*", "\\", "/usr/bin/",
         "|", "&&", ";", "bash", "-c", "env", "K=kubectl", "sudo", "xargs", "=", "'", '"', "https://h/", "http"]


@given(st.lists(st.sampled_from(WORDS), max_size=8), st.lists(st.sampled_from(["", " ", "'", '"']), max_size=8))
@settings(max_examples=400, deadline=None, database=None)
def test_what_the_pre_filter_lets_through_the_planner_finds_nothing_in(words: list[str], glue: list[str]) -> None:
    """Sound, not complete: whenever the pre-filter says a line cannot run a tool, the planner agrees."""
    from envlabel.commands import CommandContext, plan_command
    from envlabel.hooks import may_run_a_tool

    line = "".join(w + (glue[i] if i < len(glue) else " ") for i, w in enumerate(words))
    if not may_run_a_tool(line):
        environ = {"K": "kubectl", "PATH": "/usr/bin"}
        assert not plan_command(line, CommandContext(environ=environ)).touches_infrastructure, line
