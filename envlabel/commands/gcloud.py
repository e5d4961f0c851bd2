"""``gcloud``: what a command does to a GCP resource, project, folder or organization, as envlabel's checks.

A command on a resource envlabel can name is checked on that resource (below); any other on the container it acts
in: ``gcloud projects VERB ID`` -> ``projects/ID``, ``gcloud resource-manager folders VERB N`` -> ``folders/N``,
``gcloud organizations VERB N`` -> ``organizations/N``; any other command -> its ``--folder``/``--organization``
if it has one, else its project: ``--project``, else ``CLOUDSDK_CORE_PROJECT``, else the active configuration's
``[core] project`` (``--configuration``, ``CLOUDSDK_ACTIVE_CONFIG_NAME`` or ``active_config`` in the gcloud
config directory, ``CLOUDSDK_CONFIG`` or ``~/.config/gcloud``); a ``projects/P/...`` name among the arguments adds
``projects/P``. Creating a project or folder is checked on the folder or organization it is created in, as a
create is checked on its container (a project created nowhere in particular: on itself, never seen).

A command on one resource of a group envlabel knows (:data:`RESOURCES`: ``compute instances``, ``compute
disks``, ``sql instances``, ``container clusters``, ``pubsub topics``/``subscriptions``, ``run services``,
``secrets``, ``spanner instances``) is checked on that resource by its full resource name, as Cloud Asset
Inventory names it, with the IAM permission the call needs as the action: ``gcloud compute instances delete vm1
--zone Z --project P`` -> ``compute.instances.delete`` on ``//compute.googleapis.com/projects/P/zones/Z/instances/
vm1`` (envlabel/actions.py classes the permission from envlabel/data/gcp-permissions.json). A resource whose name
needs a location the command does not give (no ``--zone``) is checked on its project's contents (the strictest
label in the project: it could be any VM of that name in any zone). A create is checked on the project it creates
in (``compute.instances.create`` on ``projects/P``). ``gcloud projects|resource-manager folders|organizations``
verbs are ``resourcemanager.projects.delete``... Cloud Storage commands name their buckets (``gs://B``), so they
are checked on each bucket they name: ``gcloud storage buckets delete gs://B`` -> ``storage.buckets.delete``,
``gcloud storage rm gs://B/...`` -> ``storage.objects.delete`` (and ``storage.buckets.delete`` for ``-r`` on a
whole bucket), ``cp``/``mv``/``rsync`` -> ``storage.objects.delete`` on every bucket they name (a copy overwrites
what is there, which GCS asks ``storage.objects.delete`` for; ``--no-clobber`` -> ``storage.objects.create``).

Any other command: the action is its verb (the first word after the command group that is a verb), read as the
generic verbs the check knows: ``create``, ``update`` (a change, a shell or a secret's data: ``ssh``, ``secrets
versions access``, ``kms decrypt``) or ``delete``; reads (``describe``, ``list``, ``get-iam-policy``...) are not
checked, as the guards do not check reads. A verb envlabel does not know is passed as the whole command, which the
check does not recognize and so decides as a delete (fail closed). ``config``, ``auth``, ``components``, ``info``...
act on the local machine: nothing.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, shown
from envlabel.commands.options import CannotRead
from envlabel.errors import TargetError
from envlabel.targets import gcs_bucket_name, parse_target

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
    # values of the resource groups' commands (RESOURCES): never read as a resource's name
    "tier", "backup-id", "backup-instance", "machine-type", "image", "image-family", "image-project", "network",
    "subnet", "metadata", "boot-disk-size", "num-nodes", "cluster-version", "database-version", "memory", "cpu",
    "service-account", "scopes", "replication-policy", "data-file", "message", "instance", "secret", "topic",
    "platform", "size", "disk", "device-name", "max-instances", "min-instances", "node-count", "config",
    "processing-units", "ack-ids", "time",
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


@dataclass(frozen=True)
class ResourceGroup:
    """How one gcloud command group names its resources and which IAM permissions its verbs need."""

    #: the permission's ``service.resource``: ``compute.instances``
    permission: str
    #: the collection of the resource's full name: ``instances``
    collection: str
    #: location flag -> the location collection of the full name (``zone`` -> ``zones``), tried in order;
    #: empty: the name has no location
    locations: Mapping[str, str] = field(default_factory=dict)
    #: gcloud verb -> the permission's verb, where it is not create, update or delete by the verb's class
    verbs: Mapping[str, str] = field(default_factory=dict)

    @property
    def service(self) -> str:
        """The host of the full name (Cloud Asset's: ``cloudsql``, not ``sqladmin``)."""
        return self.permission.partition(".")[0]

    def full_name(self, project: str, location: tuple[str, str] | None, name: str) -> str:
        where = f"{location[0]}/{location[1]}/" if location else ""
        return f"//{self.service}.googleapis.com/projects/{project}/{where}{self.collection}/{name}"


_IAM_VERBS = {"add-iam-policy-binding": "setIamPolicy", "remove-iam-policy-binding": "setIamPolicy",
              "set-iam-policy": "setIamPolicy"}
_LABEL_VERBS = {"add-labels": "setLabels", "remove-labels": "setLabels"}
_POWER_VERBS = {v: v for v in ("start", "stop", "reset", "resume", "suspend")}
#: gcloud command group -> how it names its resources (docs/gcp.md, "Commands"); a group not here is checked on
#: its project
RESOURCES: dict[tuple[str, ...], ResourceGroup] = {
    ("compute", "instances"): ResourceGroup("compute.instances", "instances", {"zone": "zones"}, {
        **_POWER_VERBS, **_LABEL_VERBS, "add-metadata": "setMetadata", "remove-metadata": "setMetadata",
        "add-tags": "setTags", "remove-tags": "setTags", "set-machine-type": "setMachineType",
        "set-service-account": "setServiceAccount", "attach-disk": "attachDisk", "detach-disk": "detachDisk"}),
    ("compute", "disks"): ResourceGroup("compute.disks", "disks", {"zone": "zones", "region": "regions"},
                                        {**_LABEL_VERBS, "resize": "resize"}),
    ("sql", "instances"): ResourceGroup("cloudsql.instances", "instances", {}, {
        "restart": "restart", "restore-backup": "restoreBackup", "failover": "failover", "export": "export",
        "import": "import", "promote-replica": "promoteReplica"}),
    ("container", "clusters"): ResourceGroup("container.clusters", "clusters", {
        "location": "locations", "zone": "locations", "region": "locations"}),
    ("pubsub", "topics"): ResourceGroup("pubsub.topics", "topics", {}, {"publish": "publish"}),
    ("pubsub", "subscriptions"): ResourceGroup("pubsub.subscriptions", "subscriptions", {}, {
        "pull": "consume", "ack": "consume", "seek": "consume"}),
    ("run", "services"): ResourceGroup("run.services", "services", {"region": "locations"}),
    ("secrets",): ResourceGroup("secretmanager.secrets", "secrets"),
    ("spanner", "instances"): ResourceGroup("spanner.instances", "instances"),
}
#: the Resource Manager permission of ``gcloud projects``, ``resource-manager folders``, ``organizations`` verbs
_CONTAINER_VERBS = {"move": "move", "undelete": "undelete"}


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
    positionals = words[at + 1:] if at is not None else []
    if cls is not None and at is not None:
        command = _Command(words, at, cls, positionals, flags, context, path)
        named = _storage(command) if words[0] == "storage" else _resources(command)
        if named is not None:
            return named
    action = _ACTIONS[cls] if cls else f"gcloud {path}"
    container = _container_permission(words, at)
    if cls and at is not None and container:
        action = f"{container}.{_permission_verb(words[at], cls, _CONTAINER_VERBS)}"
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


def _permission_verb(verb: str, cls: str, verbs: Mapping[str, str]) -> str:
    """The IAM permission verb a gcloud verb needs: declared, else create, update or delete by its class."""
    return verbs.get(verb) or _IAM_VERBS.get(verb) or {"create": "create", "delete": "delete"}.get(cls, "update")


def _container_permission(words: list[str], at: int | None) -> str | None:
    """``resourcemanager.projects`` (folders, organizations) for a verb of their command group, else None."""
    if words[:1] == ["projects"] and at == 1:
        return "resourcemanager.projects"
    if words[:1] == ["organizations"] and at == 1:
        return "resourcemanager.organizations"
    if words[:2] == ["resource-manager", "folders"] and at == 2:
        return "resourcemanager.folders"
    return None


@dataclass(frozen=True)
class _Command:
    """One gcloud command as read: its words, the index of its verb and the verb's class, what follows it."""

    words: list[str]
    at: int
    cls: str
    positionals: list[str]
    flags: dict[str, list[str]]
    context: CommandContext
    path: str

    @property
    def verb(self) -> str:
        return self.words[self.at]

    @property
    def project(self) -> str:
        """``--project``, else the configured project; CannotRead when there is none."""
        explicit = self.flags.get("project")
        return explicit[-1] if explicit else _require_project(self.context, self.flags)


def _resources(command: _Command) -> list[Operation] | None:
    """The operations of a verb of a :data:`RESOURCES` group, each on the resource it names; None: not one."""
    group = RESOURCES.get(tuple(command.words[:command.at]))
    if group is None:
        return None
    action = f"{group.permission}.{_permission_verb(command.verb, command.cls, group.verbs)}"
    ops: list[Operation] = []
    for name in command.positionals or [""]:
        target, where = _resource_name(group, name, command)
        if command.cls == "create":  # a create is checked on the container it creates in
            target, where = _project_of_name(target, command), f"creates {shown(name) or 'one'} in it"
        _check_target(target)
        # a project stands for a resource it cannot name: its contents decide; a delete also takes what is below
        contents = command.cls == "delete" or (command.cls != "create" and target.startswith("projects/"))
        ops.append(Operation(TOOL, target, action, contents=contents,
                             note=shown(f"gcloud {command.path}: {command.cls} {where}")))
    return list(dict.fromkeys(ops))


def _resource_name(group: ResourceGroup, name: str, command: _Command) -> tuple[str, str]:
    """(target, how it was read) of one resource a command names: its full name, or its project when the command
    does not say enough to name it (no location, no name, a name of another shape), decided by its contents."""
    kind = group.collection.removesuffix("s")
    if "/" in name:
        try:
            full = parse_target(name).id if name.startswith(("projects/", "//")) else ""
        except TargetError:
            full = ""
        if full.startswith(f"//{group.service}.googleapis.com/projects/") and \
                full.split("/")[-2:-1] == [group.collection]:
            return full, f"on {full}"
        scope = _project_of_name(name, command)
        return scope, f"on {shown(name)}, a name envlabel does not map to one {kind}: the strictest label in " \
                      f"{scope} decides"
    project = command.project
    if not name:
        return f"projects/{project}", f"names no {kind}: the strictest label in projects/{project} decides"
    location = next(((collection, command.flags[flag][-1].rpartition("/")[2])
                     for flag, collection in group.locations.items() if command.flags.get(flag)), None)
    if group.locations and location is None:
        flags = "/".join(f"--{f}" for f in group.locations)
        return f"projects/{project}", (f"on {shown(name)} with no {flags}: it could be any {kind} named so in "
                                       f"projects/{project}, so the strictest label there decides")
    full = group.full_name(project, location, name)
    return full, f"on {shown(full)}"


def _project_of_name(name: str, command: _Command) -> str:
    """``projects/P`` of a full or relative name, else the command's project."""
    found = _PROJECT_NAME.findall(name)
    if found and found[0] != "_":
        return f"projects/{found[0]}"
    return f"projects/{command.project}"


def _require_project(context: CommandContext, flags: dict[str, list[str]]) -> str:
    project = _configured_project(context, flags)
    if not project:
        raise CannotRead("no project: the command has no --project and no project is configured "
                         "(CLOUDSDK_CORE_PROJECT or `gcloud config set project`), so envlabel cannot tell where it "
                         "acts; pass --project")
    return project


#: ``gcloud storage VERB`` (objects) -> the permission on each bucket it names; cp/rsync may overwrite
_STORAGE_VERBS = {"rm": "storage.objects.delete", "mv": "storage.objects.delete", "cp": "storage.objects.delete",
                  "rsync": "storage.objects.delete"}


def _storage(command: _Command) -> list[Operation] | None:
    """A Cloud Storage command: the permission it needs on each bucket it names (``gs://B``); a bucket create on
    its project. None: a command of another group, or one that names no bucket (decided on its project)."""
    group, verb, flags = tuple(command.words[:command.at]), command.verb, command.flags
    urls = [p for p in command.positionals if p.startswith("gs://")]
    if group in (("storage", "buckets"), ("storage", "objects")):
        action = f"storage.{group[1]}.{_permission_verb(verb, command.cls, {})}"
    elif group == ("storage",):
        action = _STORAGE_VERBS.get(verb) or f"storage.objects.{_permission_verb(verb, command.cls, {})}"
        if verb in ("cp", "rsync") and ("no-clobber" in flags or "-n" in flags):
            action = "storage.objects.create"
    else:
        return None
    if not urls:
        if group == ("storage", "objects") or (group == ("storage", "buckets") and command.cls == "create"):
            return None
        raise CannotRead(f"`gcloud {command.path}` names no gs:// URL on the line (a list on its standard input, a "
                         "flag envlabel does not read), so envlabel cannot tell which bucket it acts on; name "
                         "the buckets", scope="")
    if command.cls == "create" and group == ("storage", "buckets"):
        return [Operation(TOOL, f"projects/{command.project}", action,
                          note=shown(f"gcloud {command.path}: creates {url} in it")) for url in urls]
    ops: list[Operation] = []
    for url in urls:
        bucket = _bucket(url, command.path)
        overwrites = verb in ("cp", "rsync") and action.endswith(".delete")
        how = f"writes to {url}, replacing objects there" if overwrites else f"{command.cls} on {url}"
        ops.append(Operation(TOOL, bucket, action, note=shown(f"gcloud {command.path}: {how}")))
        whole = not url.removeprefix("gs://").partition("/")[2]
        if verb == "rm" and whole and {"recursive", "-r", "-R"} & set(flags):
            ops.append(Operation(TOOL, bucket, "storage.buckets.delete",
                                 note=shown(f"gcloud {command.path} -r: removes the bucket {url} itself")))
    return list(dict.fromkeys(ops))


def _bucket(url: str, path: str) -> str:
    """The Cloud Asset name of the bucket of a ``gs://`` URL; what names no one bucket cannot be read."""
    bucket = url.removeprefix("gs://").partition("/")[0]
    if not is_known(bucket) or any(c in bucket for c in "*?[]{}"):
        raise CannotRead(f"`gcloud {path}` on {shown(url)}: the bucket is a pattern or computed when the command "
                         "runs, so envlabel cannot tell which buckets it acts on; name each bucket", scope="")
    try:
        return gcs_bucket_name(url)
    except TargetError as error:
        raise CannotRead(f"`gcloud {path}`: {error}", scope="") from None


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
        raise CannotRead(f"{target!r} is not a GCP resource, project, folder or organization name envlabel can "
                         "check") from None


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
            flags.setdefault(arg, []).append("true")  # under its dash: -r is never a long flag's name
        else:
            words.append(arg)
    return words, flags, ambiguous
