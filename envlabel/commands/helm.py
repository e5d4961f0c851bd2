"""``helm``: what a release command does to the cluster, as envlabel's checks.

A release is not an object envlabel labels: its objects live in the release's namespace (``-n``,
``HELM_NAMESPACE``, the kubeconfig context's, else ``default``), and a chart may put objects anywhere in it, so
every operation is on that namespace with ``contents`` (the strictest object there decides):

- ``uninstall``/``delete RELEASE...`` -> ``delete``: helm uninstall deletes every object of the release
- ``upgrade [--install] RELEASE CHART``, ``rollback RELEASE [REVISION]`` -> ``update`` (objects the new revision
  drops are deleted too, which the command line cannot show); ``--force`` replaces objects -> ``delete``
- ``install [NAME] CHART``, ``test RELEASE`` -> ``create``
- ``list``, ``status``, ``get``, ``history``, ``show``, ``template``, ``lint``, ``search``, ``repo``, ``pull``,
  ``package``, ``dependency``, ``version``, ``env``, ``plugin``, ``diff`` (the plugin), ... -> nothing
- ``--dry-run`` -> nothing; anything else (another plugin) cannot be read: fail closed.

The cluster is resolved as for kubectl (:mod:`envlabel.commands.kubeconfig`) from ``--kube-context`` (or
``HELM_KUBECONTEXT``), ``--kubeconfig`` and ``--kube-apiserver`` (or ``HELM_KUBEAPISERVER``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, shown
from envlabel.commands.k8s import namespace_target
from envlabel.commands.kubeconfig import KubeScope, resolve_scope
from envlabel.commands.options import CannotRead, FlagSpec, Parsed, parse

TOOL = "helm"
PROGRAMS = frozenset({"helm"})

SPEC = FlagSpec(
    values={
        "namespace", "kube-context", "kubeconfig", "kube-apiserver", "kube-token", "kube-as-user", "kube-as-group",
        "kube-ca-file", "kube-tls-server-name", "registry-config", "repository-config", "repository-cache",
        "content-cache", "burst-limit", "qps", "color", "colour", "set", "set-string", "set-file", "set-json",
        "set-literal", "values", "version", "timeout", "description", "repo", "username", "password", "ca-file",
        "cert-file", "key-file", "keyring", "post-renderer", "post-renderer-args", "name-template", "output",
        "history-max", "labels", "cascade", "max", "filter", "selector",
    },
    bools={
        "kube-insecure-skip-tls-verify", "debug", "help", "install", "force", "reset-values", "reuse-values",
        "reset-then-reuse-values", "cleanup-on-fail", "create-namespace", "devel", "dependency-update",
        "disable-openapi-validation", "enable-dns", "generate-name", "no-hooks", "skip-crds", "skip-schema-validation",
        "render-subchart-notes", "replace", "verify", "insecure-skip-tls-verify", "pass-credentials", "plain-http",
        "hide-notes", "hide-secret", "atomic", "rollback-on-failure", "force-conflicts", "keep-history",
        "wait-for-jobs", "recreate-pods", "take-ownership", "ignore-not-found", "logs", "all-namespaces", "all",
        "force-replace", "force-update", "skip-tests", "short",
    },
    # helm 4: --wait=watcher|legacy|hookOnly, --server-side=auto|true|false; bare, they are bools
    optional={"dry-run", "wait", "server-side"},
    shorts={"n": "namespace", "f": "values", "i": "install", "g": "generate-name", "o": "output", "h": "help",
            "A": "all-namespaces", "a": "all", "l": "selector", "q": "short"},
)

_READS = frozenset({
    "list", "ls", "status", "get", "history", "hist", "show", "inspect", "template", "lint", "search", "repo",
    "pull", "fetch", "push", "package", "dependency", "dep", "dependencies", "version", "env", "plugin", "help",
    "completion", "create", "verify", "registry", "diff", "docs",
})
_VERBS = {"uninstall": "delete", "un": "delete", "delete": "delete", "del": "delete", "upgrade": "update",
          "rollback": "update", "install": "create", "test": "create"}


def read(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
    """The operations of one helm command line (argv[0] is the program as written); what cannot be read is
    :class:`Unparsed`, decided fail closed."""
    parsed = parse(list(argv[1:]), SPEC)
    try:
        return list(_read(parsed, context))
    except CannotRead as error:
        scope = _scope(parsed, context) if error.scope is None else error.scope
        return [Unparsed(TOOL, "", shown(str(error)), scope=scope)]


def _resolve(parsed: Parsed, context: CommandContext) -> KubeScope:
    return resolve_scope(context, kubeconfig=parsed.value("kubeconfig"),
                         context_name=parsed.value("kube-context") or context.environ.get("HELM_KUBECONTEXT"),
                         server=parsed.value("kube-apiserver") or context.environ.get("HELM_KUBEAPISERVER"),
                         namespace=parsed.value("namespace") or context.environ.get("HELM_NAMESPACE"))


def _scope(parsed: Parsed, context: CommandContext) -> str:
    """What an Unparsed helm command is decided on: its cluster, when that is known."""
    try:
        return f"k8s://{_resolve(parsed, context).cluster}"
    except CannotRead:
        return ""


def _read(parsed: Parsed, context: CommandContext) -> list[Operation]:
    words = parsed.positionals
    if not words:
        if parsed.ambiguous:
            raise CannotRead(_ambiguous(parsed))
        return []
    verb = words[0]
    if any(seen == 0 for _, seen in parsed.ambiguous):
        raise CannotRead(_ambiguous(parsed))
    if verb in _READS:
        return []
    action = _VERBS.get(verb)
    if action is None:
        raise CannotRead(f"helm {verb} is not a helm command envlabel knows (a plugin?), so it cannot tell what it "
                         "changes")
    if parsed.ambiguous:
        raise CannotRead(_ambiguous(parsed))
    dry_run = parsed.value("dry-run")
    if dry_run is not None and is_known(dry_run) and dry_run.lower() not in ("none", "false"):
        return []
    releases = _releases(verb, words[1:], parsed)
    if parsed.flag("force") and verb in ("upgrade", "rollback"):
        action = "delete"
    scope = _resolve(parsed, context)
    note = {
        "delete": f"helm {verb} {releases} deletes every object of the release",
        "update": f"helm {verb} {releases} changes the release's objects and deletes those it no longer has",
        "create": f"helm {verb} {releases} creates the chart's objects",
    }[action]
    if parsed.flag("force") and verb in ("upgrade", "rollback"):
        note += " (--force deletes and recreates them)"
    if is_known(scope.namespace):
        target, where = namespace_target(scope.cluster, scope.namespace), f"namespace {scope.namespace}"
    else:  # a namespace computed when the command runs may be any of the cluster's
        target, where = f"k8s://{scope.cluster}", f"namespace {shown(scope.namespace)}, computed when it runs"
    return [Operation(TOOL, target, action, contents=True, note=shown(f"{note} in {where} ({scope.how})"))]


def _releases(verb: str, args: list[str], parsed: Parsed) -> str:
    """The release names a command acts on, as words for the note; a command missing its arguments cannot be read."""
    needed = {"upgrade": 2, "install": 1 if parsed.flag("generate-name") else 2}.get(verb, 1)
    if len(args) < needed:
        usage = {"upgrade": "RELEASE CHART", "install": "[NAME] CHART"}.get(verb, "RELEASE")
        raise CannotRead(f"helm {verb} needs {usage}")
    if verb == "install" and parsed.flag("generate-name"):
        return "(a generated name)"
    return " ".join(args[:1] if verb in ("upgrade", "install", "rollback", "test") else args)


def _ambiguous(parsed: Parsed) -> str:
    flags = ", ".join(sorted({flag for flag, _ in parsed.ambiguous}))
    return (f"helm flag {flags} is not one envlabel knows, so it cannot tell whether the next word is its value or "
            "an argument; write it as --flag=VALUE")
