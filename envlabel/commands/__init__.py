"""What a shell command line would do to infrastructure: the operations it performs, each a target and an
action the check decides (``envlabel check-command``, ``POST /v1/check-command``, the coding-agent hooks).

    plan = plan_command("aws rds delete-db-instance --db-instance-identifier orders --profile prod")
    plan.operations   # [Operation(tool="aws", target="arn:aws:rds:...:db:orders", action="rds:DeleteDBInstance")]
    plan.unparsed     # what an infrastructure tool was asked that could not be understood (decided fail closed)
    decide_command(plan, lambda op: client.check(op.target, op.action, op.contents))
    # {"decision": "deny", "operations": [CHECK JSON, ...], "unparsed": [...]}

The line is split with real shell rules (:mod:`envlabel.commands.shell`): ``&&``, ``||``, ``;``, pipes,
subshells, ``$( ... )``, ``bash -c``/``sh -c``, ``VAR=value``, ``export`` and ``env`` prefixes, ``sudo``,
``xargs``, ``timeout``, ``nohup``... Each simple command whose program is an infrastructure tool goes to that
tool's reader (:data:`READERS`, imported only when a line runs that tool); anything else performs no
infrastructure operation and is not sent anywhere.

What the line does not say. A value the shell would compute at run time (``$(...)``, a variable envlabel does
not know, what ``xargs`` appends) reaches a reader as a word containing :data:`UNKNOWN`; unquoted, it may stand
for any number of words. A reader never draws a conclusion from such a word: it answers :class:`Unparsed`, or
an operation as wide as anything the word could name (``contents`` of the namespace or account). Test with
:func:`is_known`; show with :func:`shown`.

How what is not understood is decided (:func:`decide_command`). An :class:`Unparsed` is ``require_approval``.
When the reader knows the scope the command would act in (the AWS account of its profile, the cluster and
namespace, the GCP project), it names it in ``Unparsed.scope``, and the decision is the stricter of
``require_approval`` and the check of an unrecognized action (:data:`UNPARSED_ACTION`, which the check decides
as a delete) on that scope with ``contents``: whatever the command was going to do, it could have done it to
the strictest thing in there, so in a production scope it is ``deny``.

This package is agent-side: it imports no daemon dependency, and nothing beyond the standard library until a
line runs an infrastructure tool (botocore only for ``aws``).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Any


@dataclass(frozen=True, slots=True)
class Operation:
    """One infrastructure operation a command performs: ``action`` (as ``envlabel check --action`` takes it:
    ``rds:DeleteDBInstance``, a Kubernetes verb such as ``delete``) on ``target`` (any accepted target form)."""

    tool: str
    target: str
    action: str
    #: decide as the strictest of the target and everything below it (a namespace-wide delete, an account-wide
    #: call that names no resource)
    contents: bool = False
    #: the simple command it comes from, as written (for messages; filled in by plan_command when empty)
    command: str = ""
    #: how it was read, when that is not obvious (``-f deploy.yaml: Deployment payments/api``)
    note: str = ""
    #: when envlabel never saw ``target``, decide by the strictest label inside this container instead (an
    #: account: the boto3 guard's fallback for kinds the scanner does not list completely)
    fallback: str = ""
    #: the call's parameters as the guard would send them (:func:`envlabel.parameters.jsonable`): they bind an
    #: approval to this very call and let recovery read ``SkipFinalSnapshot``; not part of the operation's identity
    parameters: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Unparsed:
    """An invocation of an infrastructure tool that could not be understood: decided fail closed."""

    tool: str
    command: str
    #: what could not be understood, and what would make it understood
    reason: str
    #: the account, cluster, namespace or project it would act in, when known: decided as an unrecognized
    #: action on everything in it (a production scope: deny)
    scope: str = ""


@dataclass(slots=True)
class CommandPlan:
    operations: list[Operation] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)

    @property
    def touches_infrastructure(self) -> bool:
        """False: no infrastructure tool is run; the command is allowed without asking envlabel."""
        return bool(self.operations or self.unparsed)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What the readers need to know beyond the command line: the process environment the command runs with
    (``AWS_PROFILE``, ``KUBECONFIG``, ...), the working directory (relative ``-f`` files), and how kubeconfig
    contexts and API server addresses map to envlabel cluster names."""

    environ: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    #: kubeconfig context name -> envlabel cluster name (from the config's kubernetes sources)
    clusters_by_context: Mapping[str, str] = field(default_factory=dict)
    #: API server URL (scheme://host:port) -> envlabel cluster name
    clusters_by_server: Mapping[str, str] = field(default_factory=dict)
    #: what the command reads on its standard input when the line shows it (a here-document, a here-string,
    #: ``< file``, ``echo ... |``, ``cat file |``): ``kubectl apply -f -``; None when it cannot be known
    stdin: str | None = None


#: reads one simple command (argv[0] is the tool, as written) into its operations and what it could not read
Reader = Callable[[Sequence[str], CommandContext], list[Operation | Unparsed]]

#: marks a value the shell computes at run time, which the line does not show: ``\\x00$(date)\\x00``
UNKNOWN = "\x00"
#: characters of a command line envlabel reads; a longer one naming a tool is not understood
MAX_LINE = 1 << 20
#: the action an Unparsed's scope is checked with: recognized by nothing, so decided as a delete
UNPARSED_ACTION = "unparsed-command"
#: decisions from least to most restrictive (as envlabel.client.DECISIONS; not imported: it pulls in httpx)
DECISIONS = ("allow", "require_approval", "deny")

#: program (its basename) -> the module of envlabel.commands that reads it (each module's PROGRAMS)
READERS: dict[str, str] = {
    "aws": "aws",
    "kubectl": "kubectl", "oc": "kubectl", "kubecolor": "kubectl",
    "helm": "helm",
    "gcloud": "gcloud",
    "curl": "http", "wget": "http", "wget2": "http", "http": "http", "https": "http", "xh": "http", "xhs": "http",
    # their effect is in state and code, not in the line: what may change anything is not understood
    "terraform": "iac", "tofu": "iac", "terragrunt": "iac", "pulumi": "iac", "cdk": "iac", "eksctl": "iac",
}
#: a line that names one of these (``http``/``https`` are too common in addresses to count), and cannot be split
#: or runs code envlabel cannot see, is not understood
_TOOL_NAMES = re.compile(r"(?<![\w.-])(?:" + "|".join(sorted(set(READERS) - {"http", "https"}, key=len, reverse=True))
                         + r")(?![\w-])", re.IGNORECASE)


def unknown(text: str) -> str:
    """A word standing for what ``text`` computes at run time (``$(date)``, ``$PROFILE``)."""
    return f"{UNKNOWN}{text.replace(UNKNOWN, '')}{UNKNOWN}"


def is_known(word: str) -> bool:
    """False when ``word`` holds anything the shell computes at run time."""
    return UNKNOWN not in word


def shown(word: str) -> str:
    """``word`` for a message: what is unknown shown as it was written (``orders-$SUFFIX``)."""
    return word.replace(UNKNOWN, "")


def program_of(argv0: str) -> str:
    """The program a command runs, by basename: ``/usr/local/bin/aws`` is ``aws``."""
    return argv0.rstrip("/").rsplit("/", 1)[-1]


def mentions_tool(text: str) -> bool:
    """True when ``text`` names an infrastructure tool anywhere (a word such as ``aws`` or ``/usr/bin/kubectl``)."""
    return _TOOL_NAMES.search(text) is not None


def reader_for(program: str) -> Reader | None:
    """The reader of ``program`` (imported now), None for a program that is not an infrastructure tool."""
    module = READERS.get(program)
    if module is None:
        return None
    try:
        read: Reader = import_module(f"envlabel.commands.{module}").read
    except (ImportError, AttributeError) as exc:
        reason = (f"this envlabel cannot read {program} commands (envlabel.commands.{module}: {exc}); "
                  "reinstall envlabel")

        def cannot(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
            return [Unparsed(program, "", reason)]
        return cannot
    return read


def plan_command(command: str | Sequence[str], context: CommandContext | None = None) -> CommandPlan:
    """Every infrastructure operation ``command`` would perform, and what it runs that cannot be understood.

    A string is a command line, split with shell rules; a sequence is one argument vector, run as is (no
    expansion: its words are literal). ``context`` None: this process's environment and working directory."""
    from envlabel.commands.lexer import ShellSyntaxError
    from envlabel.commands.shell import split_argv, split_line

    if context is None:
        context = CommandContext(environ=dict(os.environ), cwd=os.getcwd())
    text = command if isinstance(command, str) else shlex.join(command)
    plan = CommandPlan()
    if len(text) > MAX_LINE:
        if mentions_tool(text):
            plan.unparsed.append(Unparsed("shell", _clip(text), f"the command is too long to read ({len(text)} "
                                                                 f"characters, at most {MAX_LINE}); split it"))
        return plan
    try:
        simple = split_line(command, context) if isinstance(command, str) else split_argv(command, context)
    except ShellSyntaxError as exc:
        if mentions_tool(text):
            plan.unparsed.append(Unparsed("shell", _clip(text), f"the command line cannot be split as a shell "
                                                                 f"would ({exc}); fix its quoting"))
        return plan
    except Exception as exc:  # envlabel's own failure: what the line runs is not known, as for a syntax error
        if mentions_tool(text):
            plan.unparsed.append(Unparsed("shell", _clip(text), f"envlabel could not read this command line "
                                                                 f"({type(exc).__name__}: {exc}); simplify it"))
        return plan
    for cmd in simple:
        for item in _read_one(cmd, context, text):
            if isinstance(item, Operation):
                plan.operations.append(item if item.command else replace(item, command=cmd.text))
            else:
                plan.unparsed.append(item if item.command else replace(item, command=cmd.text))
    plan.operations = list(dict.fromkeys(plan.operations))
    plan.unparsed = list(dict.fromkeys(plan.unparsed))
    return plan


def _read_one(cmd: Any, context: CommandContext, line: str) -> list[Operation | Unparsed]:
    """What one simple command (:class:`envlabel.commands.shell.SimpleCommand`) does to infrastructure."""
    program = program_of(cmd.argv[0])
    hidden = cmd.hidden or ("" if is_known(program) else f"the program it runs is computed when it runs "
                                                         f"({shown(cmd.argv[0])}); name the program")
    if hidden:  # $TOOL args, bash -c "$SCRIPT", curl ... | sh, eval of what is computed
        return [Unparsed("shell", cmd.text, hidden)] if mentions_tool(line) else []
    reader = reader_for(program)
    if reader is None:
        return []
    if cmd.tainted:  # after a `source` envlabel could not read: its variables, even its functions, unknown
        return [Unparsed(program, cmd.text, cmd.tainted)]
    try:
        return reader(cmd.argv, replace(context, environ=cmd.environ, cwd=cmd.cwd, stdin=cmd.stdin))
    except Exception as exc:  # a reader's failure is decided fail closed, never a crash
        return [Unparsed(program, cmd.text, f"envlabel could not read this {program} command "
                                            f"({type(exc).__name__}: {exc})")]


def decide_command(plan: CommandPlan, decide: Callable[[Operation], Mapping[str, Any]]) -> dict[str, Any]:
    """The plan decided: ``{"decision", "operations": [CHECK JSON...], "unparsed": [...]}``.

    ``decide`` is the check of one operation (``client.check(op.target, op.action, op.contents)`` or the
    daemon's own). Each operation's check JSON gains ``tool``, ``command`` and ``note``; one with a
    ``fallback`` whose target envlabel never saw is decided by the fallback's strictest label instead (as the
    boto3 guard decides). Each unparsed entry is ``{"tool", "command", "reason", "scope", "decision", "check"}``
    (``check``: the scope's check JSON, or null); an operation whose target the check refuses (TargetError) is
    such an entry too, decided ``deny``. The decision is the strictest of all; a plan with nothing in it is
    ``allow`` without calling ``decide``. An unreachable envlabel raises, for the caller to decide."""
    cache: dict[Operation, dict[str, Any]] = {}

    def check(op: Operation) -> dict[str, Any]:
        key = replace(op, command="", note="")
        if key not in cache:
            answer = dict(decide(key))
            if op.fallback and not (answer.get("label") or {}).get("found", True):
                answer = dict(decide(Operation(op.tool, op.fallback, op.action, contents=True)))
                answer["reasons"] = [f"{op.target} was never seen by envlabel; decided by the strictest label "
                                     f"inside {op.fallback}", *answer.get("reasons", [])]
            cache[key] = answer
        return cache[key]

    from envlabel.errors import TargetError

    operations: list[dict[str, Any]] = []
    unparsed: list[dict[str, Any]] = []
    for op in plan.operations:
        try:
            operations.append({**check(op), "tool": op.tool, "command": op.command, "note": op.note})
        except TargetError as exc:  # a target the check refuses: nothing can be decided for it, so deny
            unparsed.append({"tool": op.tool, "command": op.command, "scope": "", "decision": "deny", "check": None,
                             "reason": f"envlabel cannot check {op.action} on {op.target!r} ({exc}), so it is "
                                       "denied; name the target in one of the forms envlabel accepts"})
    for item in plan.unparsed:
        try:
            scope_check = check(Operation(item.tool, item.scope, UNPARSED_ACTION, contents=True)) \
                if item.scope else None
        except TargetError:
            scope_check = None
        decision = strictest(["require_approval", scope_check["decision"] if scope_check else "allow"])
        unparsed.append({"tool": item.tool, "command": item.command, "reason": item.reason, "scope": item.scope,
                         "decision": decision, "check": scope_check})
    decision = strictest([str(o.get("decision")) for o in operations] + [u["decision"] for u in unparsed])
    return {"decision": decision, "operations": operations, "unparsed": unparsed}


def strictest(decisions: Sequence[str]) -> str:
    """The most restrictive of ``decisions`` (one not understood counts as ``deny``); none: ``allow``."""
    ranks = [DECISIONS.index(d) if d in DECISIONS else len(DECISIONS) - 1 for d in decisions]
    return DECISIONS[max(ranks, default=0)]


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
