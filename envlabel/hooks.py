"""Coding-agent hooks: the agent's shell command is checked with envlabel before it runs.

    envlabel hook claude-code      # Claude Code PreToolUse hook (Bash tool): allow / ask / deny
    envlabel hook codex            # Codex PreToolUse hook (Bash): deny only

The agent spawns the hook for every tool call, with the call as JSON on stdin; the hook plans the command
(:func:`envlabel.commands.plan_command`, locally: ``-f`` files, AWS profiles and kubeconfig contexts are read
here, in the agent's environment) and, when it touches infrastructure, checks every operation with the
envlabel server (``ENVLABEL_URL``, ``ENVLABEL_TOKEN``; the SDK's :class:`envlabel.client.Client`). The answer
is written in the agent's own protocol:

- envlabel ``allow`` (and every command that runs no infrastructure tool): no output, so the agent's own
  permission rules still apply (envlabel says nothing about ``rm -rf`` on a laptop; an ``allow`` from the
  hook would skip the agent's prompt);
- ``require_approval``: Claude Code ``ask`` (the person sees the environment and the evidence in the prompt);
  Codex has no ask, so a ``deny`` whose message says how to get the approval;
- ``deny``: ``deny``, with a reason the model reads: the environment, the evidence, and what to do.

Fail closed: envlabel unreachable, an input that cannot be read, or any error inside the hook is a ``deny``
that says why (both agents run the command when a hook crashes or exits 1, so this module never lets an
exception out). ``ENVLABEL_FAIL_OPEN=1`` lets commands through while envlabel is unreachable, with a warning.

This module is agent-side and lean: a command that touches no infrastructure costs the interpreter's start,
the planner and one JSON document (no HTTP client, no config, no click: ``service/entry.py`` comes straight
here).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, NamedTuple

#: the agents whose hook protocol is spoken here
AGENTS = ("claude-code", "codex")
#: the largest hook input read (a tool call is a few KiB; a heredoc can be more)
MAX_INPUT = 8 * 1024 * 1024
#: the tools whose input is a shell command (Claude Code's Bash tool; Codex names its shell tools Bash too)
SHELL_TOOLS = frozenset({"Bash"})
USAGE = ("usage: envlabel hook claude-code|codex [--config FILE] [--url URL]  (reads the agent's PreToolUse "
         "JSON on stdin; install with `envlabel hook install claude-code|codex`)")
_TRUE = frozenset({"1", "true", "yes", "on"})


class Verdict(NamedTuple):
    """What the hook says: ``decision`` is allow, require_approval, deny, or ``none`` (no opinion: not a shell
    command); ``reason`` is what the model or the person reads; ``warning`` a message shown beside it."""

    decision: str
    reason: str = ""
    warning: str = ""


def main(argv: Sequence[str] | None = None, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    """``envlabel hook AGENT [--config FILE] [--url URL]``: answer one hook call; the exit code is 0 (the answer
    is on stdout), or 2 for a usage error (both agents read exit 2 as "block", with stderr as the reason)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    options: dict[str, str] = {}
    agent = args.pop(0) if args and not args[0].startswith("-") else ""
    while args:
        flag = args.pop(0)
        name, _, value = flag.partition("=")
        if name in ("--config", "--url") and (value or args):
            options[name[2:]] = value or args.pop(0)
        else:
            print(f"envlabel: unexpected argument {flag!r}\n{USAGE}", file=sys.stderr)
            return 2
    if agent not in AGENTS:
        print(f"envlabel: no hook for agent {agent!r}; agents: {', '.join(AGENTS)}\n{USAGE}", file=sys.stderr)
        return 2
    return run(agent, stdin or sys.stdin, stdout or sys.stdout, environ=os.environ if environ is None else environ,
               config_path=options.get("config"), url=options.get("url"))


def run(agent: str, stdin: IO[str], stdout: IO[str], *, environ: Mapping[str, str],
        config_path: str | None = None, url: str | None = None) -> int:
    """Read one hook call from ``stdin``, write ``agent``'s answer to ``stdout``; never raises."""
    try:
        verdict = judge(read_input(stdin), environ, config_path=config_path, url=url)
    except Exception as exc:  # a crashed hook lets the command run in both agents: deny instead
        verdict = Verdict("deny", f"envlabel could not check this command ({type(exc).__name__}: {exc}). It was "
                                  "not run: envlabel blocks what it cannot check. Report this to whoever runs "
                                  "envlabel; do not try to run the command another way.")
    answer = render(agent, verdict)
    try:
        if answer:
            stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    except (OSError, ValueError) as exc:  # stdout closed: exit 2 with the reason on stderr still blocks
        print(f"envlabel: could not write the hook answer ({exc}); blocking", file=sys.stderr)
        return 2
    return 0


def read_input(stdin: IO[str]) -> Any:
    """The hook call: one JSON document on stdin."""
    text = stdin.read(MAX_INPUT + 1)
    if len(text) > MAX_INPUT:
        raise ValueError(f"the hook input is larger than {MAX_INPUT} bytes")
    return json.loads(text)


#: every program envlabel.commands.READERS reads (a test holds the two equal): the pre-filter below must not need
#: the planner's import, which is most of a hook's own time
TOOL_PROGRAMS = ("aws", "kubectl", "oc", "kubecolor", "helm", "gcloud", "curl", "wget", "wget2", "http", "https",
                 "xh", "xhs", "terraform", "tofu", "terragrunt", "pulumi", "cdk", "eksctl")
#: characters through which a line can spell a program without writing its name: expansions (``$K``, ``$(...)``,
#: backticks), brace expansion (``ku{bectl,}``) and globs (``/usr/bin/kube*``)
_SPELLING = re.compile(r"[$`{*?\\[]")
_TOOL_WORD = re.compile(r"(?<![\w.-])(?:" + "|".join(sorted(TOOL_PROGRAMS, key=len, reverse=True)) + r")(?![\w-])",
                        re.IGNORECASE)


def may_run_a_tool(command: str) -> bool:
    """False only when ``command`` cannot run an infrastructure tool: it names none, even once its quotes are
    taken away (``ku"be"ctl`` is kubectl), and holds nothing that could spell one at run time. Such a line is
    answered without importing the planner, which would find nothing in it either.

    >>> may_run_a_tool("ls -la | grep 'foo bar'"), may_run_a_tool("ku'be'ctl delete pod x"), may_run_a_tool("$K get")
    (False, True, True)
    """
    return bool(_SPELLING.search(command)) or any(
        _TOOL_WORD.search(text) is not None for text in (command, command.replace('"', "").replace("'", "")))


def judge(payload: Any, environ: Mapping[str, str], *, config_path: str | None = None,
          url: str | None = None) -> Verdict:
    """The verdict on one PreToolUse call (Claude Code and Codex send the same fields: ``hook_event_name``,
    ``tool_name``, ``tool_input.command``, ``cwd``)."""
    if not isinstance(payload, dict):
        return Verdict("deny", "envlabel's hook input is not a JSON object; is the hook installed for this agent? "
                               "Run `envlabel hook install claude-code` (or codex) again.")
    event = payload.get("hook_event_name", "PreToolUse")
    if event != "PreToolUse" or payload.get("tool_name") not in SHELL_TOOLS:
        return Verdict("none")  # not a shell command: nothing for envlabel to say
    tool_input = payload.get("tool_input")
    command = tool_input.get("command") if isinstance(tool_input, dict) else None
    if isinstance(command, list) and not all(isinstance(word, str) for word in command):
        command = None  # an argument vector holds words only
    if not isinstance(command, str | list):
        return Verdict("deny", "envlabel found no command in this Bash call (tool_input.command is missing or not "
                               "a string), so it could not check it; run the command as a plain string.")
    if isinstance(command, str) and not may_run_a_tool(command):
        return Verdict("none")
    cwd = payload.get("cwd")
    cwd = cwd if isinstance(cwd, str) and cwd else os.getcwd()
    from envlabel.commands import CommandContext, plan_command

    plan = plan_command(command, CommandContext(environ=environ, cwd=cwd))
    if not plan.touches_infrastructure:
        return Verdict("none")
    config_path = config_path or environ.get("ENVLABEL_CONFIG") or None
    if config_path:  # kubeconfig contexts and API servers named as envlabel's clusters (the config is costly)
        by_context, by_server = cluster_maps_of(config_path)
        plan = plan_command(command, CommandContext(environ=environ, cwd=cwd, clusters_by_context=by_context,
                                                    clusters_by_server=by_server))
    return decide_with_server(plan, environ, url)


def decide_with_server(plan: Any, environ: Mapping[str, str], url: str | None) -> Verdict:
    """Every operation of ``plan`` checked by the envlabel server, as one verdict."""
    from envlabel.client import Client, mode_from_env, principal_from_env
    from envlabel.commands import decide_command
    from envlabel.errors import EnvlabelError, UnreachableError

    try:
        client = Client(url or environ.get("ENVLABEL_URL") or None, environ.get("ENVLABEL_TOKEN") or None,
                        principal=principal_from_env(environ), interface="hook", mode=mode_from_env(environ))
        with client, client.deadline():  # one deadline for every check of the command
            answer = decide_command(plan, lambda op: client.check(op.target, op.action, op.contents,
                                                                        parameters=op.parameters))
    except UnreachableError as exc:
        if environ.get("ENVLABEL_FAIL_OPEN", "").strip().lower() in _TRUE:
            return Verdict("none", warning=f"envlabel is unreachable and ENVLABEL_FAIL_OPEN is set, so this "
                                           f"command was not checked: {exc}")
        return Verdict("deny", f"envlabel did not answer, so this command was not run (envlabel blocks what it "
                               f"cannot check): {exc}. Ask the person running this session to start envlabel "
                               "or point ENVLABEL_URL at it; do not run the command another way.")
    except EnvlabelError as exc:
        return Verdict("deny", f"envlabel could not check this command, so it was not run: {exc}")
    return verdict_of(answer)


# -- the answer, in words ---------------------------------------------------------------------------
def verdict_of(answer: Mapping[str, Any]) -> Verdict:
    """The verdict on a decided command (``{"decision", "operations", "unparsed"}``), with its reason.

    In audit mode (every operation answered ``mode: audit``: shadow mode) nothing is blocked: no opinion, as
    for ``allow``, with a warning that says what enforcement would have done."""
    decision = str(answer.get("decision"))
    if decision != "allow" and audited(answer):
        return Verdict("none", describe(answer), warning=f"envlabel audit mode: would have "
                                                         f"{_WOULD.get(decision, 'denied')} this command. "
                                                         + describe(answer))
    if decision == "allow":
        return Verdict("allow", describe(answer))
    if decision == "require_approval":
        return Verdict("require_approval", describe(answer))
    return Verdict("deny", describe(answer))  # deny, and any decision not understood: fail closed


_WOULD = {"require_approval": "asked for approval of", "deny": "denied"}


def audited(answer: Mapping[str, Any]) -> bool:
    """True when the server answered every check of the command in audit mode (an unparsed part, decided here
    without a check, is enforced unless its scope's check was audited too)."""
    checks = [op for op in answer.get("operations", []) if isinstance(op, Mapping)]
    for item in answer.get("unparsed", []):
        if isinstance(item, Mapping):
            scope = item.get("check")
            if not isinstance(scope, Mapping):
                return False
            checks.append(scope)
    return bool(checks) and all(check.get("mode") == "audit" for check in checks)


def approval_ids(operations: Sequence[Mapping[str, Any]]) -> list[str]:
    """The approval requests the server created or reused for the command's operations, in order."""
    found: list[str] = []
    for op in operations:
        approval = op.get("approval")
        approval_id = approval.get("id") if isinstance(approval, Mapping) else None
        if op.get("decision") == "require_approval" and isinstance(approval_id, str) and approval_id not in found:
            found.append(approval_id)
    return found


def describe(answer: Mapping[str, Any]) -> str:
    """What envlabel decided on each operation and why (the environment, the evidence), then what to do."""
    decision = str(answer.get("decision"))
    operations = [op for op in answer.get("operations", []) if isinstance(op, Mapping)]
    unparsed = [u for u in answer.get("unparsed", []) if isinstance(u, Mapping)]
    # the strictest first: that is what decided the command
    rank = {"deny": 0, "require_approval": 1, "allow": 2}
    operations.sort(key=lambda op: rank.get(str(op.get("decision")), 0))
    head = {"deny": "envlabel denied this command", "require_approval": "envlabel: this command needs approval",
            "allow": "envlabel allows this command"}.get(decision, f"envlabel answered {decision!r}: denied")
    lines = [f"{head}."]
    for op in operations:
        approvers = op.get("approvers") or []
        asks = f" (approvers: {', '.join(map(str, approvers))})" if approvers else ""
        command = f"`{op['command']}`: " if op.get("command") else ""
        lines.append(f"- {op.get('decision')}: {command}{op.get('action')} ({op.get('action_class')}) on "
                     f"{op.get('target')}, which is {op.get('environment')}{asks}")
        lines += [f"    {line}" for line in [op.get("note"), *op.get("reasons", [])] if line]
    for item in unparsed:
        lines.append(f"- {item.get('decision', 'deny')}: `{item.get('command')}` could not be understood: "
                     f"{item.get('reason')}")
    lines.append(advice(decision, operations, unparsed))
    return "\n".join(lines)


def advice(decision: str, operations: Sequence[Mapping[str, Any]], unparsed: Sequence[Mapping[str, Any]]) -> str:
    """What to do next, for the model or the person reading the reason."""
    if decision == "allow":
        return "Nothing to do."
    approvers = sorted({str(a) for op in operations if op.get("decision") == "require_approval"
                        for a in op.get("approvers") or []})
    if decision == "require_approval":
        who = ", ".join(approvers) or "a person who may approve it"
        ids = approval_ids(operations)
        if ids:
            commands = " and ".join(f"`envlabel approvals approve {i} --by NAME`" for i in ids)
            return (f"What to do: a person must approve this ({who}): approval request{'s' * (len(ids) > 1)} "
                    f"{', '.join(ids)}. Stop and ask your operator to run {commands} (or approve it on the "
                    "approval page), then run the same command again; do not change it (the approval allows "
                    "this exact command once). If a target is not the one you meant, check which account, "
                    "profile or cluster context the command uses.")
        return (f"What to do: a person must approve this ({who}). Do not run it another way; if a target is not "
                "the one you meant, check which account, profile or cluster context the command uses.")
    if unparsed and not any(op.get("decision") == "deny" for op in operations):
        return ("What to do: write the command so it can be read (plain flags, literal names, no variables or "
                "substitutions in the parts that name the target), or ask a person to run it.")
    return ("What to do: do not retry this command or work around it (other credentials, another tool, the API "
            "directly). If the target is not the one you meant, check which account, profile or cluster context "
            "the command uses. If its environment is wrong, a person fixes its label (its environment tag, or "
            "`envlabel override set`).")


def render(agent: str, verdict: Verdict) -> dict[str, Any] | None:
    """``verdict`` in ``agent``'s hook protocol: the JSON to print, or None to print nothing (no opinion)."""
    answer: dict[str, Any] = {}
    if verdict.warning:
        answer["systemMessage"] = verdict.warning
    decision, reason = verdict.decision, verdict.reason
    if agent == "codex" and decision == "require_approval":  # Codex hooks cannot ask: a deny that says how
        decision = "deny"
        reason += ("\nCodex hooks cannot ask for approval, so the command was not run. Stop and ask the user: "
                   "show them the command and this reason; an approver can run it outside the agent.")
    permission = {"deny": "deny", "require_approval": "ask"}.get(decision)
    if permission is not None:
        answer["hookSpecificOutput"] = {"hookEventName": "PreToolUse", "permissionDecision": permission,
                                        "permissionDecisionReason": reason}
    return answer or None


# -- kubeconfig contexts and API servers named as envlabel's clusters ----------------------------------
def cluster_maps_of(config_path: str) -> tuple[dict[str, str], dict[str, str]]:
    """(kubeconfig context -> cluster, API server URL -> cluster) from the kubernetes sources of the config
    file at ``config_path``."""
    from envlabel.config import load_config

    return cluster_maps(load_config(config_path).sources)


def cluster_maps(sources: Sequence[Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(kubeconfig context -> cluster, API server URL -> cluster) from kubernetes ``sources``: a source's
    ``context`` (else its kubeconfig's current context) names its cluster, and so does the API server that
    context points at, read from the source's kubeconfig (else ``KUBECONFIG``, else ``~/.kube/config``, as
    the scanner reads it) where that file is readable here."""
    from envlabel.commands import CommandContext
    from envlabel.commands.kubeconfig import load_kubeconfig
    from envlabel.commands.options import CannotRead

    by_context: dict[str, str] = {}
    by_server: dict[str, str] = {}
    here = CommandContext(environ=dict(os.environ), cwd=os.getcwd())
    for source in sources:
        if getattr(source, "type", None) != "kubernetes" or getattr(source, "in_cluster", False):
            continue
        cluster = source.cluster_name
        try:
            kubeconfig = load_kubeconfig(here, source.kubeconfig)
        except CannotRead:
            kubeconfig = None
        context = source.context or (kubeconfig.current_context if kubeconfig else None)
        if not context:
            continue
        by_context.setdefault(context, cluster)
        entry = kubeconfig.contexts.get(context, {}) if kubeconfig else {}
        name = entry.get("cluster")
        server = kubeconfig.servers.get(name) if kubeconfig and isinstance(name, str) else None
        if isinstance(server, str) and server:
            by_server.setdefault(server.rstrip("/"), cluster)
    return by_context, by_server


if __name__ == "__main__":
    sys.exit(main())
