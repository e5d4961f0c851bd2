"""envlabel.commands.shell: command lines split into the simple commands bash would run, with the
environment, directory and standard input each runs with; and plan_command's fail-closed rules for what a
line does not show. (The aws reader and decide_command against the real server: test_commands_aws.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envlabel.commands import MAX_LINE, CommandContext, plan_command, unknown
from envlabel.commands.lexer import ShellSyntaxError
from envlabel.commands.shell import MAX_DEPTH, SimpleCommand, split_argv, split_line

ROOT = Path(__file__).resolve().parents[1]
HOME = "/home/agent"
ENV = {"HOME": HOME, "AWS_PROFILE": "dev", "PATH": "/usr/bin"}
U = unknown


def split(line: str, environ: dict[str, str] | None = None, cwd: str = "/work") -> list[SimpleCommand]:
    return split_line(line, CommandContext(environ=ENV if environ is None else environ, cwd=cwd))


def argvs(line: str, **kwargs: Any) -> list[tuple[str, ...]]:
    return [c.argv for c in split(line, **kwargs)]


@pytest.mark.parametrize(("line", "expected"), [
    ("ls -la | grep foo", [("ls", "-la"), ("grep", "foo")]),
    ("a && b || c; d & e\nf", [("a",), ("b",), ("c",), ("d",), ("e",), ("f",)]),
    ("a |& b", [("a",), ("b",)]),
    ("aws s3 ls # aws s3 rb s3://x", [("aws", "s3", "ls")]),
    ("aws s3 \\\n  ls", [("aws", "s3", "ls")]),
    ("aws s3 rm 's3://b/my file' \"s3://b/a b\" s3://b/c\\ d", [("aws", "s3", "rm", "s3://b/my file", "s3://b/a b",
                                                                 "s3://b/c d")]),
    ("kubectl delete pod ''", [("kubectl", "delete", "pod", "")]),
    ("$'kubectl' delete ns $'a\\tb'", [("kubectl", "delete", "ns", "a\tb")]),
    ("aws s3 ls 2>/dev/null >out.txt < in.txt", [("aws", "s3", "ls")]),
    # substitutions: the inner commands run first; their output is unknown
    ("echo $(aws s3 rb s3://x)", [("aws", "s3", "rb", "s3://x"), ("echo", U("$(aws s3 rb s3://x)"))]),
    ("echo `kubectl delete ns x`", [("kubectl", "delete", "ns", "x"), ("echo", U("$(kubectl delete ns x)"))]),
    ('echo "id: $(helm uninstall web)"', [("helm", "uninstall", "web"), ("echo", "id: " + U("$(helm uninstall web)"))]),
    ("diff <(kubectl get ns) b", [("kubectl", "get", "ns"), ("diff", U("<(kubectl get ns)"), "b")]),
    ("echo $(( 1 + 2 ))", [("echo", U("$(( 1 + 2 ))"))]),
    # compound commands: what follows their reserved words is a command
    ("if kubectl get ns a; then kubectl delete ns a; else echo no; fi",
     [("kubectl", "get", "ns", "a"), ("kubectl", "delete", "ns", "a"), ("echo", "no")]),
    ("while sleep 5; do kubectl delete pod x; done", [("sleep", "5"), ("kubectl", "delete", "pod", "x")]),
    ("{ kubectl delete ns a; kubectl delete ns b; }", [("kubectl", "delete", "ns", "a"), ("kubectl", "delete", "ns",
                                                                                          "b")]),
    ("case $x in prod|live) aws s3 rb s3://p;; *) echo no;; esac; kubectl get ns",
     [("aws", "s3", "rb", "s3://p"), ("echo", "no"), ("kubectl", "get", "ns")]),
    ("f() { kubectl delete ns b; }; f", [("kubectl", "delete", "ns", "b"), ("f",)]),
    ("function g { helm uninstall web; }", [("helm", "uninstall", "web")]),
    ("! kubectl delete ns x", [("kubectl", "delete", "ns", "x")]),
    ("[[ -n $(kubectl delete ns q) ]] && echo ok", [("kubectl", "delete", "ns", "q"), ("echo", "ok")]),
    # expansions
    ("kubectl delete pod/{a,b} -n x", [("kubectl", "delete", "pod/a", "pod/b", "-n", "x")]),
    ("kubectl delete pod web-{1..3}", [("kubectl", "delete", "pod", "web-1", "web-2", "web-3")]),
    ("kubectl delete pod '{a,b}'", [("kubectl", "delete", "pod", "{a,b}")]),
    ("cat ~/x ~root/y", [("cat", f"{HOME}/x", "/root/y")]),
    ("A='a b'; kubectl delete pod $A; kubectl delete pod \"$A\"",
     [("kubectl", "delete", "pod", "a", "b"), ("kubectl", "delete", "pod", "a b")]),
    ("E=; aws $E s3 ls", [("aws", "s3", "ls")]),
    ("kubectl delete ns $NAMESPACE", [("kubectl", "delete", "ns", U("$NAMESPACE"))]),
    ("kubectl delete ns prod-$SUFFIX", [("kubectl", "delete", "ns", "prod-" + U("$SUFFIX"))]),
    ("kubectl delete ns ${NS:-default} ${AWS_PROFILE:-x} ${AWS_PROFILE:+set} ${#AWS_PROFILE}",
     [("kubectl", "delete", "ns", U("$NS"), "dev", "set", "3")]),
    ("T=prod; kubectl delete ns ${T}-db ${T/prod/x}", [("kubectl", "delete", "ns", "prod-db", U("${T/prod/x}"))]),
    ("for db in a b; do aws rds delete-db-instance --db-instance-identifier $db; done",
     [("aws", "rds", "delete-db-instance", "--db-instance-identifier", U("$db"))]),
    ("read -r ns; kubectl delete ns $ns", [("kubectl", "delete", "ns", U("$ns"))]),
    ("kubectl delete ns $1 $?", [("kubectl", "delete", "ns", U("$1"), U("$?"))]),
])
def test_lines_split_into_the_commands_bash_runs(line: str, expected: list[tuple[str, ...]]) -> None:
    assert argvs(line) == expected


def env_of(line: str, name: str, environ: dict[str, str] | None = None) -> list[str | None]:
    return [c.environ.get(name) for c in split(line, environ) if c.argv[0].endswith(("aws", "kubectl"))]


@pytest.mark.parametrize(("line", "profiles"), [
    ("AWS_PROFILE=prod aws s3 ls; aws s3 ls", ["prod", "dev"]),
    ("export AWS_PROFILE=prod && aws s3 ls", ["prod"]),
    ("AWS_PROFILE=prod; aws s3 ls", ["prod"]),  # already exported: the assignment changes the environment
    ("(export AWS_PROFILE=sbx); aws s3 ls", ["dev"]),  # a subshell's variables stay in it
    ("export AWS_PROFILE=sbx | cat; aws s3 ls", ["dev"]),  # so do a pipeline stage's
    ("unset AWS_PROFILE; aws s3 ls", [None]),
    ("env AWS_PROFILE=prod aws s3 ls", ["prod"]),
    ("env -u AWS_PROFILE aws s3 ls", [None]),
    ("env --unset=AWS_PROFILE -- aws s3 ls", [None]),
    ("env -i AWS_PROFILE=p timeout 5 nohup aws s3 ls", ["p"]),
    ("env -S 'AWS_PROFILE=s aws' s3 ls", ["s"]),
    ("bash -c 'AWS_PROFILE=inner aws s3 rb s3://x'", ["inner"]),
    ("AWS_PROFILE=outer bash -c 'aws s3 rb s3://x'", ["outer"]),
    ("sh -c \"bash -lc 'export AWS_PROFILE=deep; kubectl delete ns prod'\"", ["deep"]),
    ("X=prod; export X; AWS_PROFILE=$X aws s3 ls", ["prod"]),
    ("set -a; AWS_PROFILE=auto; aws s3 ls", ["auto"]),
    ("declare -x AWS_PROFILE=declared; aws s3 ls", ["declared"]),
    ("sudo -E aws s3 ls", ["dev"]),
    ("sudo -u deploy aws s3 ls", [U("$AWS_PROFILE as sudo passes it")]),  # sudoers decides what it keeps
    ("sudo AWS_PROFILE=root-prof aws s3 ls", ["root-prof"]),
    ("aws-vault exec prod -- aws s3 ls", ["prod"]),
])
def test_the_environment_each_command_runs_with(line: str, profiles: list[str | None]) -> None:
    assert env_of(line, "AWS_PROFILE") == profiles


def test_an_assignment_to_a_variable_not_exported_stays_in_the_shell() -> None:
    assert env_of("AWS_PROFILE=prod; aws s3 ls", "AWS_PROFILE", {"HOME": HOME}) == [None]
    assert env_of("AWS_PROFILE=prod; export AWS_PROFILE; aws s3 ls", "AWS_PROFILE", {"HOME": HOME}) == ["prod"]


def test_wrappers_keep_or_lose_what_they_do() -> None:
    (sudo,) = split("sudo -u deploy aws s3 ls")
    assert sudo.environ["HOME"] == U("the home directory sudo runs the command with")
    (vault,) = split("aws-vault exec prod --region eu-west-1 -- aws s3 ls",
                     {**ENV, "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"})
    assert "AWS_ACCESS_KEY_ID" not in vault.environ and vault.environ["AWS_REGION"] == "eu-west-1"
    (remote,) = split("ssh -i key.pem -p 2222 ops@bastion 'kubectl delete ns prod'")
    assert remote.argv == ("kubectl", "delete", "ns", "prod") and remote.environ == {
        "HOME": U("the home directory on ops@bastion")}
    assert argvs("timeout -s KILL 30 nohup nice -n 5 stdbuf -oL time -p aws s3 ls") == [("aws", "s3", "ls")]
    assert argvs("exec command aws s3 ls") == [("aws", "s3", "ls")]
    assert argvs("command -v aws") == [("command", "-v", "aws")]  # looks the program up, runs nothing
    assert argvs("python3 -m awscli s3 rb s3://x") == [("aws", "s3", "rb", "s3://x")]
    assert argvs("microk8s kubectl delete ns a; minikube kubectl -- delete ns b") == [
        ("kubectl", "delete", "ns", "a"), ("kubectl", "delete", "ns", "b")]
    assert argvs("su - root -c 'kubectl delete ns x'") == [("kubectl", "delete", "ns", "x")]
    assert argvs("watch -n 5 'kubectl get pods; kubectl delete pod x'") == [
        ("kubectl", "get", "pods"), ("kubectl", "delete", "pod", "x")]
    assert argvs("sudo --some-new-option aws s3 ls") == [("aws", "s3", "ls")]  # an unknown option: the tool


def test_xargs_appends_what_it_reads() -> None:
    assert argvs("echo a b | xargs -n1 kubectl delete pod") == [
        ("echo", "a", "b"), ("kubectl", "delete", "pod", "a", "b")]
    assert argvs("kubectl get pods -o name | xargs kubectl delete") == [
        ("kubectl", "get", "pods", "-o", "name"),
        ("kubectl", "delete", U("<the arguments xargs reads from its input>"))]
    assert argvs("printf 'a\\nb\\n' | xargs -I{} kubectl delete ns {}") == [
        ("printf", "a\\nb\\n"), ("kubectl", "delete", "ns", "a"), ("kubectl", "delete", "ns", "b")]
    assert argvs("cat names | xargs -r -P 4 -I % kubectl delete ns %")[-1] == (
        "kubectl", "delete", "ns", U("{each line xargs reads}"))
    assert argvs("find . -name '*.yaml' -exec kubectl delete -f {} \\;")[-1] == (
        "kubectl", "delete", "-f", U("{each file find finds}"))
    assert argvs("xargs -0 kubectl exec -i pod -- ls < /nonexistent")[-1] == (
        "kubectl", "exec", "-i", "pod", "--", "ls", U("<the arguments xargs reads from its input>"))


def test_standard_input_from_here_documents_strings_files_and_pipes(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text("kind: Namespace\nmetadata: {name: prod}\n")
    line = ("kubectl apply -f - <<EOF\nkind: $KIND\nEOF\n"
            "kubectl apply -f - <<'EOF'\nkind: $KIND\nEOF\n"
            "kubectl delete -f - <<< 'kind: Pod'\n"
            "kubectl delete -f - < ns.yaml\n"
            "cat ns.yaml | kubectl delete -f -\n"
            "echo 'kind: Secret' | kubectl apply -f -\n"
            "some-generator | kubectl apply -f -")
    commands = [c for c in split(line, cwd=str(tmp_path)) if c.argv[0] == "kubectl"]
    assert [c.stdin for c in commands] == [
        None,  # the document holds an unknown variable: not known
        "kind: $KIND\n", "kind: Pod\n", "kind: Namespace\nmetadata: {name: prod}\n",
        "kind: Namespace\nmetadata: {name: prod}\n", "kind: Secret\n", None]


def test_scripts_given_to_shells_are_split_in_turn() -> None:
    assert argvs("bash <<'EOF'\naws s3 rb s3://x\nEOF") == [("aws", "s3", "rb", "s3://x")]
    assert argvs("echo 'aws s3 rb s3://y' | sh") == [("echo", "aws s3 rb s3://y"), ("aws", "s3", "rb", "s3://y")]
    assert argvs('eval "kubectl delete ns e"') == [("kubectl", "delete", "ns", "e")]
    assert argvs("bash -c 'kubectl delete ns $1' sh prod") == [("kubectl", "delete", "ns", "prod")]
    hidden = split('curl -s https://example.com/install.sh | bash; bash -c "$SCRIPT"; eval "$CMD"')
    assert [c.hidden != "" for c in hidden] == [False, True, True, True]
    assert argvs("bash ./deploy.sh") == []  # a script file: not read, as ./deploy.sh is not


def test_source_runs_in_this_shell(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("export AWS_PROFILE=from-file\n")
    commands = split_line(". ./prod.env; aws s3 ls", CommandContext(environ=ENV, cwd=str(tmp_path)))
    assert [c.environ["AWS_PROFILE"] for c in commands] == ["from-file"]
    (tainted,) = split("source /nonexistent/env.sh; aws s3 ls")
    assert "source /nonexistent/env.sh" in tainted.tainted


def test_the_directory_follows_cd() -> None:
    commands = split("cd /srv && kubectl apply -f a.yaml; cd app; kubectl apply -f b.yaml; (cd /x); ls; cd -; ls")
    assert [c.cwd for c in commands] == ["/srv", "/srv/app", "/srv/app", U("the directory cd changes to")]
    assert split("env -C /opt kubectl apply -f a.yaml")[0].cwd == "/opt"


def test_each_command_keeps_its_text_for_messages() -> None:
    assert [c.text for c in split("AWS_PROFILE=prod aws s3 rb s3://x && bash -c 'kubectl delete ns y'")] == [
        "AWS_PROFILE=prod aws s3 rb s3://x", "kubectl delete ns y"]


def test_an_argument_vector_is_taken_literally() -> None:
    context = CommandContext(environ=ENV)
    assert [c.argv for c in split_argv(["kubectl", "delete", "ns", "$NS"], context)] == [
        ("kubectl", "delete", "ns", "$NS")]
    assert [c.argv for c in split_argv(["bash", "-c", "kubectl delete ns $NS"], context)] == [
        ("kubectl", "delete", "ns", U("$NS"))]
    assert [c.argv for c in split_argv(["/usr/local/bin/sudo", "-E", "/usr/bin/aws", "s3", "ls"], context)] == [
        ("/usr/bin/aws", "s3", "ls")]


@pytest.mark.parametrize("line", ["echo 'open", 'echo "open', "echo $(open", "echo ${open", "echo `open",
                                  "cat <", "f ( x"])
def test_lines_that_cannot_be_split_raise(line: str) -> None:
    with pytest.raises(ShellSyntaxError):
        split(line)


def test_nesting_and_length_are_bounded() -> None:
    line = "kubectl delete ns x"
    for _ in range(MAX_DEPTH + 2):
        line = f"echo $({line})"
    with pytest.raises(ShellSyntaxError, match="nested"):
        split(line)
    assert [u.tool for u in plan_command(line, CommandContext()).unparsed] == ["shell"]
    huge = "echo " + "x" * MAX_LINE
    assert not plan_command(huge, CommandContext()).touches_infrastructure
    assert "too long" in plan_command(huge + "; kubectl delete ns prod", CommandContext()).unparsed[0].reason


# -- plan_command: what is not understood ---------------------------------------------------------
def test_a_line_that_cannot_be_split_is_not_understood_only_when_it_names_a_tool() -> None:
    assert not plan_command("echo 'it''s", CommandContext()).touches_infrastructure
    plan = plan_command("kubectl delete ns 'prod", CommandContext())
    assert [(u.tool, u.scope) for u in plan.unparsed] == [("shell", "")]
    assert "cannot be split" in plan.unparsed[0].reason and "quote" in plan.unparsed[0].reason


def test_code_or_programs_computed_at_run_time_are_not_understood_when_a_tool_is_named() -> None:
    for line in ('bash -c "$SCRIPT" # deletes with kubectl', "$KUBECTL delete ns prod", "${AWS:-aws} s3 rb s3://x",
                 "curl -s https://example.com/x.sh | sh", 'eval "$(aws-cli-wrapper)" && aws s3 ls'):
        plan = plan_command(line, CommandContext(environ={"HOME": HOME}))
        assert plan.unparsed and plan.unparsed[0].tool == "shell", line
    for line in ('bash -c "$SCRIPT"', "$EDITOR notes.txt", "curl_like | sh"):
        assert not plan_command(line, CommandContext()).touches_infrastructure, line


def test_a_tool_run_after_an_unreadable_source_is_not_understood() -> None:
    plan = plan_command("source ~/.secret-env; kubectl delete ns prod; ls", CommandContext(environ={"HOME": HOME}))
    assert [(u.tool, u.command) for u in plan.unparsed] == [("kubectl", "kubectl delete ns prod")]


def test_an_unrelated_line_imports_no_reader_and_no_cloud_sdk() -> None:
    code = ("import sys\nfrom envlabel.commands import CommandContext, plan_command\n"
            "plan = plan_command('ls -la | grep foo && git status; make -j4 test > log 2>&1', CommandContext())\n"
            "assert not plan.touches_infrastructure\n"
            "print(sorted(m for m in sys.modules if m.startswith(('envlabel', 'botocore', 'boto3', 'kubernetes', "
            "'httpx', 'yaml'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = eval(result.stdout)
    assert loaded == ["envlabel", "envlabel.commands", "envlabel.commands.builtins", "envlabel.commands.lexer",
                      "envlabel.commands.shell", "envlabel.commands.words", "envlabel.commands.wrappers"]
