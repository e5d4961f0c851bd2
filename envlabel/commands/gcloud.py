"""``gcloud``: what a command does to a GCP project, folder or organization, as envlabel's checks.

envlabel labels GCP containers (projects, folders, organizations), so the target is the container a command acts
in: ``gcloud projects VERB ID`` -> ``projects/ID``, ``gcloud resource-manager folders VERB N`` -> ``folders/N``,
``gcloud organizations VERB N`` -> ``organizations/N``; any other command -> its ``--folder``/``--organization``
if it has one, else its project: ``--project``, else ``CLOUDSDK_CORE_PROJECT``, else the active configuration's
``[core] project`` (``--configuration``, ``CLOUDSDK_ACTIVE_CONFIG_NAME`` or ``active_config`` in the gcloud
config directory, ``CLOUDSDK_CONFIG`` or ``~/.config/gcloud``); a ``projects/P/...`` name among the arguments adds
``projects/P``. Creating a project or folder is checked on the folder or organization it is created in, as a
create is checked on its container (a project created nowhere in particular: on itself, never seen).

The action is the command's verb (the first word after the command group that is a verb), read as the generic
verbs the check knows (the vocabulary has no GCP permissions yet): ``create``, ``update`` (a change, a shell or a
secret's data: ``ssh``, ``secrets versions access``, ``kms decrypt``) or ``delete``; reads (``describe``, ``list``,
``get-iam-policy``...) are not checked, as the guards do not check reads. A verb envlabel does not know is passed
as the whole command, which the check does not recognize and so decides as a delete (fail closed). ``config``,
``auth``, ``components``, ``info``... act on the local machine: nothing. Cloud Storage writes name buckets, whose
project their global names do not tell: they cannot be read.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Sequence

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, shown
from envlabel.commands.options import CannotRead
from envlabel.errors import TargetError
from envlabel.targets import parse_target

TOOL = "gcloud"
PROGRAMS = frozenset({"gcloud"})

_TRACKS = frozenset({"alpha", "beta", "preview"})
_LOCAL = frozenset({"config", "auth", "components", "info", "version", "help", "topic", "init", "cheat-sheet",
                    "feedback", "survey", "emulators", "meta", "interactive"})
_VALUES = frozenset({
    "project", "account", "configuration", "billing-project", "format", "verbosity", "impersonate-service-account",
    "flags-file", "flatten", "trace-token", "access-token-file", "filter", "limit", "page-size", "sort-by", "region",
    "zone", "folder", "organization", "name", "display-name", "labels", "update-labels", "remove-labels", "member",
    "role", "condition", "condition-from-file", "description", "parent", "location", "policy-file", "tags",
})
_BOOLS = frozenset({"quiet", "async", "help", "log-http", "user-output-enabled", "no-user-output-enabled",
                    "set-as-default", "enable-cloud-apis", "clear-labels", "all", "force"})
_SHORT_BOOLS = frozenset({"-q", "-h"})

_READ = frozenset({"describe", "list", "get", "ls", "cat", "read", "search", "show", "tail", "browse", "lookup",
                   "check", "explain", "export", "du", "wait", "poll", "validate", "test-iam-permissions",
                   "get-credentials"})
_CREATE = frozenset({"create", "insert", "clone", "copy", "cp", "upload", "publish", "submit", "snapshot", "write",
                     "mb", "generate", "build", "register"})
_MODIFY = frozenset({"update", "patch", "set", "add", "enable", "disable", "start", "stop", "suspend", "resume",
                     "restart", "reset", "resize", "move", "import", "deploy", "rollback", "upgrade", "undelete",
                     "restore", "failover", "promote", "execute", "run", "call", "ssh", "scp", "connect", "access",
                     "decrypt", "encrypt", "cancel", "apply", "rotate", "pull", "ack", "seek", "migrate", "rename",
                     "retry", "invoke", "pause", "reboot", "reconcile", "approve", "reject", "deny", "attach",
                     "config-ssh", "detach", "tunnel", "proxy", "port-forward", "reserve", "release", "install",
                     "configure"})
_DELETE = frozenset({"delete", "destroy", "purge", "remove", "rm", "rb", "mv", "rsync", "terminate", "recreate",
                     "replace", "uninstall", "wipe", "truncate", "erase", "drop"})
_PREFIXES: tuple[tuple[str, str], ...] = (
    *((p, "read") for p in ("get-", "list-", "describe-", "search-", "show-", "print-", "lookup-", "check-",
                            "validate-", "export-", "tail-")),
    *((p, "create") for p in ("create-", "copy-", "upload-", "insert-", "generate-")),
    *((p, "delete") for p in ("delete-", "destroy-", "purge-", "recreate-", "terminate-", "wipe-")),
    *((p, "modify") for p in ("update-", "set-", "add-", "remove-", "enable-", "disable-", "attach-", "detach-",
                              "promote-", "modify-", "patch-", "reset-", "rotate-", "sign-", "expand-", "start-",
                              "stop-", "resume-", "suspend-", "execute-", "abandon-", "move-", "import-", "apply-",
                              "restart-", "resize-", "approve-", "reject-", "deploy-", "rollback-", "switch-",
                              "simulate-", "cancel-", "restore-", "upgrade-", "unset-", "clear-",
                              "connect-")),
)
#: the class of a verb -> the generic verb the check reads it as
_ACTIONS = {"create": "create", "modify": "update", "delete": "delete"}
_PROJECT_NAME = re.compile(r"(?:^|/)projects/([^/]+)")
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def read(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
    """The operations of one gcloud command line (argv[0] is the program as written); what cannot be read is
    :class:`Unparsed`, decided fail closed."""
    words, flags, ambiguous = _parse(list(argv[1:]))
    try:
        return list(_read(words, flags, ambiguous, context))
    except CannotRead as error:
        scope = _scope(flags, context) if error.scope is None else error.scope
        return [Unparsed(TOOL, "", shown(str(error)), scope=scope)]


def _scope(flags: dict[str, list[str]], context: CommandContext) -> str:
    """What an Unparsed gcloud command is decided on: its folder, organization or project, when known."""
    try:
        chosen = _parents(flags) or [f"projects/{p}" for p in flags.get("project", [])[-1:]] or [
            f"projects/{_configured_project(context, flags)}"]
        _check_target(chosen[0])
    except CannotRead:
        return ""
    return chosen[0]


def verb_class(word: str) -> str | None:
    """``read``, ``create``, ``modify`` or ``delete`` for a gcloud command's verb; None: not a verb envlabel knows.

    >>> [verb_class(w) for w in ("delete", "add-iam-policy-binding", "describe", "instances")]
    ['delete', 'modify', 'read', None]
    """
    for table, cls in ((_READ, "read"), (_CREATE, "create"), (_MODIFY, "modify"), (_DELETE, "delete")):
        if word in table:
            return cls
    return next((cls for prefix, cls in _PREFIXES if word.startswith(prefix)), None)


def changes_configuration(argv: Sequence[str]) -> bool:
    """True for a command that changes which project later gcloud commands act in (``gcloud config set``,
    ``gcloud config configurations activate``): a reader of one command cannot follow that."""
    words, _flags, _ambiguous = _parse(list(argv[1:]))
    words = [w for w in words if w not in _TRACKS]
    return words[:1] == ["config"] and len(words) > 1 and words[1] in ("set", "unset", "configurations")


def _read(words: list[str], flags: dict[str, list[str]], ambiguous: list[tuple[str, int]],
          context: CommandContext) -> list[Operation]:
    if words[:1] and words[0] in _TRACKS:
        words = words[1:]
        ambiguous = [(flag, seen - 1) for flag, seen in ambiguous]
    if not words or words[0] in _LOCAL:
        return []
    if "flags-file" in flags:
        raise CannotRead("--flags-file reads more flags from a file, which envlabel does not: pass them on the line")
    # the verb: the first verb-like word after the group; after a word computed when the command runs, it could be
    # anything (the computed word may be the verb)
    known = next((i for i, w in enumerate(words) if not is_known(w)), len(words))
    at = next((i for i, w in enumerate(words[:known]) if i > 0 and verb_class(w) is not None), None)
    if any(seen <= (at if at is not None else len(words)) for _, seen in ambiguous):
        names = ", ".join(sorted({f for f, _ in ambiguous}))
        raise CannotRead(f"gcloud flag {names} before the command is not one envlabel knows, so it cannot tell the "
                         "command from the flag's value; write it as --flag=VALUE after the command")
    cls = verb_class(words[at]) if at is not None else None
    if cls == "read":
        return []
    path = shown(" ".join(words[:at + 1] if at is not None else words))
    action = _ACTIONS[cls] if cls else f"gcloud {path}"
    positionals = words[at + 1:] if at is not None else []
    if cls is not None and cls != "read" and words[0] == "storage" and any(p.startswith("gs://") for p in positionals):
        raise CannotRead("a Cloud Storage bucket's name does not tell which project it is in, so envlabel cannot "
                         f"decide `gcloud {path}` on gs://...; ask for approval", scope="")
    targets = _targets(words, at, positionals, flags, context)
    why = "" if cls else " (not a verb envlabel knows: decided as a delete)"
    ops = []
    for target, contents, where in targets:
        _check_target(target)
        ops.append(Operation(TOOL, target, action, contents=contents,
                             note=shown(f"gcloud {path}: {cls or 'unknown verb'} {where}{why}")))
    return ops


def _targets(words: list[str], at: int | None, positionals: list[str], flags: dict[str, list[str]],
             context: CommandContext) -> list[tuple[str, bool, str]]:
    """(target, contents, where) of a command: the container it names, else the folder, organization or project
    it is scoped to."""
    verb = words[at] if at is not None else ""
    group = words[0] if words[0] in ("projects", "organizations") else (
        "folders" if words[:2] == ["resource-manager", "folders"] else None)
    if group is not None and at is not None and at == (2 if group == "folders" else 1):
        parent = _parents(flags)
        if verb == "create" and not positionals and parent:  # a folder's id is given when it is created
            return [(t, False, f"creates a {group[:-1]} in {t}") for t in parent]
        if not positionals:
            raise CannotRead(f"gcloud {' '.join(words)} names no {group[:-1]}: pass its id", scope="")
        own = f"{group}/{positionals[0].rpartition('/')[2]}"
        if not is_known(own):  # not the configured project's: the command names its own container
            raise CannotRead(f"{shown(own)} is computed when the command runs: write it out", scope="")
        if verb == "create":
            return [(t, False, f"creates {own} in {t}") for t in parent] or [(own, False, f"creates {own}")]
        moved = [(t, False, f"{own} moves into it") for t in parent] if verb == "move" else []
        return [(own, verb_class(verb) == "delete", f"on {own}"), *moved]
    found = [(t, False, f"scoped to {t}") for t in _parents(flags)]
    found += [(f"projects/{m}", False, f"names projects/{m}") for p in positionals for m in _PROJECT_NAME.findall(p)]
    explicit = flags.get("project")
    if explicit or not found:
        project = explicit[-1] if explicit else _configured_project(context, flags)
        if not project:
            raise CannotRead("no project: the command has no --project and no project is configured "
                             "(CLOUDSDK_CORE_PROJECT or `gcloud config set project`), so envlabel cannot tell where it "
                             "acts; pass --project")
        found.append((f"projects/{project}", False, f"in projects/{project}"))
    return list({t[0]: t for t in found}.values())


def _parents(flags: dict[str, list[str]]) -> list[str]:
    found = [f"folders/{v.rpartition('/')[2]}" for v in flags.get("folder", [])]
    return found + [f"organizations/{v.rpartition('/')[2]}" for v in flags.get("organization", [])]


def _check_target(target: str) -> None:
    if not is_known(target):
        raise CannotRead(f"{shown(target)} is computed when the command runs, so envlabel cannot tell where the "
                         "command acts: write it out")
    try:
        parse_target(target)
    except TargetError:
        raise CannotRead(f"{target!r} is not a GCP project, folder or organization id envlabel can check") from None


def _configured_project(context: CommandContext, flags: dict[str, list[str]]) -> str | None:
    env = context.environ
    if env.get("CLOUDSDK_CORE_PROJECT"):
        return env["CLOUDSDK_CORE_PROJECT"]
    home = env.get("HOME")
    directory = env.get("CLOUDSDK_CONFIG") or (os.path.join(home, ".config", "gcloud") if home else None)
    if not directory:
        return None
    chosen = flags.get("configuration") or []
    name = (chosen[-1] if chosen else None) or env.get("CLOUDSDK_ACTIVE_CONFIG_NAME") \
        or _first_line(os.path.join(directory, "active_config")) or "default"
    if not _CONFIG_NAME.match(name):
        raise CannotRead(f"{name!r} is not a gcloud configuration name")
    parser = configparser.ConfigParser(interpolation=None)
    path = os.path.join(directory, "configurations", f"config_{name}")
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as error:
        raise CannotRead(f"cannot read the gcloud configuration {path}: {error}") from None
    return parser.get("core", "project", fallback=None) or None


def _first_line(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline(256).strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _parse(args: list[str]) -> tuple[list[str], dict[str, list[str]], list[tuple[str, int]]]:
    """(words, flags, ambiguous flags with how many words came before each) of a gcloud argv."""
    words: list[str] = []
    flags: dict[str, list[str]] = {}
    ambiguous: list[tuple[str, int]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            words.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if eq:
                flags.setdefault(name, []).append(value)
            elif name in _VALUES and i < len(args):
                flags.setdefault(name, []).append(args[i])
                i += 1
            else:
                if name not in _BOOLS and not name.startswith("no-"):
                    ambiguous.append((arg, len(words)))
                flags.setdefault(name, []).append("true")
        elif arg.startswith("-") and len(arg) > 1:
            if arg not in _SHORT_BOOLS:
                ambiguous.append((arg, len(words)))
        else:
            words.append(arg)
    return words, flags, ambiguous
