"""``kubectl`` (and ``oc``, ``kubecolor``): what a command line does to the cluster, as envlabel's checks.

    read(["kubectl", "delete", "deploy", "api", "-n", "payments"], context)
    # [Operation(tool="kubectl", target="k8s://prod-eu/payments/deployments/api", action="delete")]

The cluster and default namespace come from the kubeconfig (:mod:`envlabel.commands.kubeconfig` gives the
order). Objects are named as kubectl names them: ``TYPE NAME...``, ``TYPE/NAME...``, ``TYPE1,TYPE2 NAME``, the
category ``all``, ``-f`` files and directories (``-R``), ``-k`` simple kustomizations. A selector (``-l``,
``--field-selector``) or ``--all`` acts on objects nobody named: the operation is on their namespace (the cluster
with ``-A``, or for cluster-scoped kinds) with ``contents``, so the strictest object there decides.

What each verb is checked as (reads are not checked, as the guards do not check them):

- ``delete`` -> ``delete`` (a namespace with its contents; a CustomResourceDefinition also deletes every object
  of its kind: the cluster's contents); ``apply`` -> ``patch`` on each object (it may create or change it: one envlabel
  never saw is decided by its namespace's contents, ``fallback``; ``--prune`` also deletes in each namespace);
  ``create``, ``run``, ``expose``, ``autoscale`` ->
  ``create`` in the namespace (the cluster for cluster-scoped kinds), as the guard checks a create;
  ``replace`` -> ``update`` (``--force``: ``delete`` and ``create``)
- ``patch``, ``edit``, ``label``, ``annotate``, ``set ...``, ``scale``, ``rollout restart|undo|pause|resume``,
  ``cordon``, ``uncordon``, ``taint`` -> ``patch``; ``certificate approve|deny`` -> ``update
  certificatesigningrequests/approval``
- ``drain`` -> ``patch`` of the node and ``create pods/eviction`` (a delete) on the cluster's contents: the pods
  it evicts may be in any namespace; a ``NoExecute`` taint evicts too
- ``exec``, ``cp`` (tar through exec) -> ``create pods/exec``; ``attach`` -> ``create pods/attach``;
  ``port-forward`` -> ``create pods/portforward``; ``debug`` -> ``create pods/exec`` on the pod or node it opens
- ``get`` of secrets -> ``get secrets`` / ``list secrets`` (their data is returned: not a read); ``--raw PATH``
  -> the API request, read as the Kubernetes guard reads it
- ``get``, ``describe``, ``logs``, ``top``, ``events``, ``diff``, ``wait``, ``explain``, ``version``, ``config``,
  ``auth can-i``, ``api-resources``, ... -> nothing; ``--dry-run`` (not ``none``) and ``--local`` -> nothing
- ``proxy`` opens the whole API to local programs unchecked, and unknown verbs (plugins) and flags cannot be
  read: fail closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, shown
from envlabel.commands.k8s import (
    ALL_CATEGORY,
    Manifest,
    api_request,
    is_cluster_scoped,
    namespace_target,
    object_target,
    read_kustomization,
    read_manifests,
    resource_of,
)
from envlabel.commands.kubeconfig import KubeScope, resolve_scope
from envlabel.commands.kubectl_flags import SPEC
from envlabel.commands.options import CannotRead, Parsed, parse

TOOL = "kubectl"
PROGRAMS = frozenset({"kubectl", "oc", "kubecolor"})

#: verbs that only read (``get`` is read here too, except for secrets)
_READS = frozenset({"describe", "logs", "log", "top", "events", "diff", "wait", "explain", "version",
                    "api-resources", "api-versions", "cluster-info", "completion", "plugin", "options", "help",
                    "kustomize", "config", "convert"})
_CREATE_IN_CLUSTER = frozenset({"namespace", "ns", "clusterrole", "clusterrolebinding", "priorityclass", "pc"})
_CREATE_IN_NAMESPACE = frozenset({"deployment", "deploy", "job", "cronjob", "cj", "secret", "configmap", "cm",
                                  "service", "svc", "serviceaccount", "sa", "role", "rolebinding", "ingress", "ing",
                                  "poddisruptionbudget", "pdb", "quota", "resourcequota"})
_CONNECT = {"exec": "create pods/exec", "attach": "create pods/attach", "port-forward": "create pods/portforward"}


@dataclass
class _Command:
    parsed: Parsed
    context: CommandContext
    verb: str
    _scope: KubeScope | None = field(default=None)

    @property
    def scope(self) -> KubeScope:
        if self._scope is None:
            p = self.parsed
            self._scope = resolve_scope(self.context, kubeconfig=p.value("kubeconfig"), context_name=p.value("context"),
                                        cluster_name=p.value("cluster"), server=p.value("server"),
                                        namespace=p.value("namespace"))
        return self._scope

    @property
    def cluster(self) -> str:
        return self.scope.cluster

    @property
    def namespace(self) -> str:
        return self.scope.namespace

    def op(self, target: str, action: str, *, contents: bool = False, note: str = "") -> Operation:
        return Operation(TOOL, target, action, contents=contents, note=shown(note))

    def obj(self, resource: str, name: str, action: str, *, contents: bool = False, note: str = "",
            namespace: str | None = None) -> Operation:
        """The operation on one named object. A kind, name or namespace the shell computes when the command runs
        could be any: the operation widens to everything it could name (its namespace's or cluster's contents)."""
        namespace = namespace or self.namespace
        if not is_known(resource):
            target, why = f"k8s://{self.cluster}", f"the kind {shown(resource)} is computed when the command runs"
        elif not is_known(name):
            target, why = self.container(resource, namespace), f"{shown(name)} is computed when the command runs"
        elif not is_cluster_scoped(resource) and not is_known(namespace):
            target, why = f"k8s://{self.cluster}", f"the namespace {shown(namespace)} is computed when it runs"
        else:
            return self.op(object_target(self.cluster, resource, name, namespace), action, contents=contents,
                           note=note)
        return self.op(target, action, contents=True, note="; ".join(filter(None, (note, why + ": any there"))))

    def manifest(self, m: Manifest, action: str, *, create: bool = False, upsert: bool = False,
                 note: str = "") -> Operation:
        """The operation on one manifest object (``create``: on where it is created; ``upsert``: created or
        changed, as ``kubectl apply`` does)."""
        note = m.describe(self.namespace) + note
        if m.name is None and not create:
            raise CannotRead(f"{m.source}: a {m.kind} with generateName has no name yet")
        if create:
            return self.op(self.container(m.resource, m.namespace, every=False), action,
                           contents=not is_known(m.namespace or self.namespace), note=note)
        found = self.obj(m.resource, m.name or "", action,
                         contents=action == "delete" and m.resource == "namespaces", note=note, namespace=m.namespace)
        if upsert and not found.contents:
            # it may not exist yet (kubectl then creates it in its namespace): never seen, it is decided by the
            # strictest label where it would be created, not as production; once it exists the lookup finds it
            found = replace(found, fallback=self.container(m.resource, m.namespace, every=False))
        return found

    def container(self, resource: str, namespace: str | None = None, *, every: bool = True) -> str:
        """Where objects nobody named are: the namespace, or the cluster (``-A``, cluster-scoped kinds, a namespace
        computed when the command runs). ``every``: all of the kind (``-A`` counts)."""
        namespace = namespace or self.namespace
        if (every and self.parsed.flag("all-namespaces")) or not (is_known(resource) and is_known(namespace)) \
                or is_cluster_scoped(resource):
            return f"k8s://{self.cluster}"
        return namespace_target(self.cluster, namespace)

    def unparsed_scope(self) -> str:
        """The scope an Unparsed of this command is decided on: its cluster (when that is known)."""
        try:
            return f"k8s://{self.cluster}"
        except CannotRead:
            return ""

    def bulk(self) -> str | None:
        """How objects nobody named are chosen (``-l app=x``, ``--all``), or None."""
        p = self.parsed
        if p.flag("all"):
            return "--all"
        chosen = [f"-l {s}" for s in p.values("selector")]
        chosen += [f"--field-selector {s}" for s in p.values("field-selector")]
        return " ".join(chosen) or None


def read(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
    """The operations of one kubectl command line (argv[0] is the program as written); what cannot be read is
    :class:`Unparsed`, decided fail closed."""
    started: list[_Command] = []
    try:
        return list(_dedupe(_read(list(argv[1:]), context, started)))
    except CannotRead as error:
        return [Unparsed(TOOL, "", shown(str(error)), scope=_scope_of(error, started))]


def _scope_of(error: CannotRead, started: list[_Command]) -> str:
    if error.scope is not None:
        return error.scope
    return started[0].unparsed_scope() if started else ""


def changes_kubeconfig(argv: Sequence[str]) -> bool:
    """True for a command that changes which cluster or namespace later kubectl/helm commands reach
    (``kubectl config use-context``, ``set-context``...): a reader of one command cannot follow that."""
    parsed = parse(argv[1:], SPEC)
    words = parsed.positionals
    return words[:1] == ["config"] and len(words) > 1 and words[1] not in (
        "view", "current-context", "get-contexts", "get-clusters", "get-users")


def _read(args: list[str], context: CommandContext, started: list[_Command]) -> list[Operation]:
    parsed = parse(args, SPEC)
    if not parsed.positionals:
        if parsed.ambiguous:
            raise CannotRead(_ambiguous(parsed))
        return []  # kubectl alone, or --help: prints help
    verb = parsed.positionals[0]
    cmd = _Command(parsed, context, verb)
    started.append(cmd)
    before_verb = [flag for flag, seen in parsed.ambiguous if seen == 0]
    if before_verb or (parsed.ambiguous and verb not in _READS and verb != "get"):
        raise CannotRead(_ambiguous(parsed))
    if verb in _READS:
        return []
    dry_run, local = parsed.value("dry-run"), parsed.value("local")
    if (dry_run is not None and is_known(dry_run) and dry_run.lower() not in ("none", "false")) or (
            local is not None and is_known(local) and parsed.flag("local")):
        return []  # nothing is sent to be persisted
    handler = _HANDLERS.get(verb)
    if handler is None:
        raise CannotRead(f"kubectl {verb} is not a kubectl command envlabel knows (a plugin?), so it cannot tell "
                         "what it changes; run the kubectl commands it stands for")
    return handler(cmd, parsed.positionals[1:])


def _ambiguous(parsed: Parsed) -> str:
    flags = ", ".join(sorted({flag for flag, _ in parsed.ambiguous}))
    return (f"kubectl flag {flags} is not one envlabel knows, so it cannot tell whether the next word is its value "
            "or a name; write it as --flag=VALUE")


def _pairs(args: list[str], verb: str) -> list[tuple[str, str | None]]:
    """(TYPE, NAME or None) of ``TYPE NAME...``, ``TYPE/NAME...`` and ``TYPE1,TYPE2 NAME``."""
    if not args:
        return []
    if "/" in args[0]:
        pairs: list[tuple[str, str | None]] = []
        for arg in args:
            kind, slash, name = arg.partition("/")
            if not (slash and kind and name):
                raise CannotRead(f"kubectl {verb}: {arg!r} mixes TYPE/NAME with TYPE NAME; use one form")
            pairs.append((kind, name))
        return pairs
    kinds = [k for k in args[0].split(",") if k]
    if any("/" in n for n in args[1:]):
        raise CannotRead(f"kubectl {verb}: TYPE/NAME after a TYPE; use one form")
    names: list[str | None] = list(args[1:]) or [None]
    return [(k, n) for k in kinds for n in names]


def _objects(cmd: _Command, args: list[str], action: str, *, names_required: bool = True,
             bulk_action: str | None = None, from_files: Callable[[Manifest], list[Operation]] | None = None,
             ) -> list[Operation]:
    """The operations of a verb on the objects it names (args, ``-f``, ``-k``) or chooses (selector, ``--all``)."""
    ops = _from_files(cmd, from_files or (lambda m: [cmd.manifest(m, action)]))
    pairs = _pairs(args, cmd.verb)
    bulk = cmd.bulk()
    if not pairs and not ops:
        raise CannotRead(f"kubectl {cmd.verb} names no object (TYPE NAME, TYPE/NAME or -f FILE)")
    if pairs and cmd.parsed.flag("all-namespaces") and any(name for _, name in pairs):
        raise CannotRead(f"kubectl {cmd.verb}: names with --all-namespaces (kubectl refuses it)")
    for kind, name in pairs:
        for resource in ALL_CATEGORY if kind.lower() == "all" else (resource_of(kind) if is_known(kind) else kind,):
            if name is not None:
                ops.append(cmd.obj(resource, name, action, contents=action == "delete" and resource == "namespaces"))
            elif bulk or not names_required:
                how = bulk or "every one"
                ops.append(cmd.op(cmd.container(resource), bulk_action or action, contents=True,
                                  note=f"kubectl {cmd.verb} {kind} {how}: objects nobody named"))
            else:
                raise CannotRead(f"kubectl {cmd.verb} {kind} names no object: add a name, -l SELECTOR or --all")
    return ops


def _from_files(cmd: _Command, build: Callable[[Manifest], list[Operation]]) -> list[Operation]:
    p = cmd.parsed
    # -f is a list flag: -f a.yaml,b.yaml names two files
    filenames = [name for value in p.values("filename") for name in value.split(",") if name]
    manifests = read_manifests(filenames, cmd.context, recursive=p.flag("recursive"))
    for directory in p.values("kustomize"):
        manifests.extend(read_kustomization(directory, cmd.context))
    return [op for m in manifests for op in build(m)]


def _delete(cmd: _Command, args: list[str]) -> list[Operation]:
    if cmd.parsed.value("raw"):
        return _raw(cmd, "DELETE")

    ops = _objects(cmd, args, "delete")
    if any(op.target.startswith(f"k8s://{cmd.cluster}/customresourcedefinitions/") for op in ops):
        ops.append(cmd.op(f"k8s://{cmd.cluster}", "delete", contents=True,
                          note="deleting a CustomResourceDefinition deletes every object of its kind"))
    return ops


def _apply(cmd: _Command, args: list[str]) -> list[Operation]:
    if args[:1] == ["view-last-applied"]:
        return []
    if args[:1] in (["edit-last-applied"], ["set-last-applied"]):
        return _objects(cmd, args[1:], "patch")
    manifests: list[Manifest] = []

    def build(m: Manifest) -> list[Operation]:
        manifests.append(m)
        return [cmd.manifest(m, "patch", upsert=True, note=" (created or changed)")]

    ops = _from_files(cmd, build)
    if not ops:
        raise CannotRead("kubectl apply names no manifest: pass -f FILE or -k DIR")
    if cmd.parsed.flag("prune"):
        containers = {cmd.container(m.resource, m.namespace) for m in manifests}
        if cmd.parsed.flag("all-namespaces") or any(is_cluster_scoped(m.resource) for m in manifests):
            containers.add(f"k8s://{cmd.cluster}")
        ops += [cmd.op(c, "delete", contents=True, note="kubectl apply --prune deletes what the manifests omit")
                for c in sorted(containers)]
    return ops


def _create(cmd: _Command, args: list[str]) -> list[Operation]:
    if cmd.parsed.value("raw"):
        return _raw(cmd, "POST")
    if cmd.parsed.values("filename") or cmd.parsed.values("kustomize"):
        return _from_files(cmd, lambda m: [cmd.manifest(m, "create", create=True)])
    what = args[0] if args else ""
    if what == "token" and len(args) > 1:
        return [cmd.obj("serviceaccounts", args[1], "create serviceaccounts/token",
                        note="issues a service account token")]
    if what in _CREATE_IN_CLUSTER:
        return [cmd.op(f"k8s://{cmd.cluster}", "create", note=f"kubectl create {what} {' '.join(args[1:2])}")]
    if what in _CREATE_IN_NAMESPACE:
        return [_create_here(cmd, f"kubectl create {what} {' '.join(args[1:2])}".rstrip())]
    raise CannotRead(f"kubectl create {what or '(nothing)'} is not a create envlabel knows; pass -f FILE")


def _create_in_namespace(cmd: _Command, args: list[str]) -> list[Operation]:
    """run, expose, autoscale: what they create goes in the command's namespace."""
    if not args and not cmd.parsed.values("filename"):
        raise CannotRead(f"kubectl {cmd.verb} names nothing")
    return [_create_here(cmd, f"kubectl {cmd.verb} {' '.join(args[:2]) or '-f ...'}")]


def _create_here(cmd: _Command, note: str) -> Operation:
    """Creating in the command's namespace (a namespace computed when it runs: anywhere in the cluster)."""
    return cmd.op(cmd.container("pods", every=False), "create", contents=not is_known(cmd.namespace), note=note)


def _replace(cmd: _Command, args: list[str]) -> list[Operation]:
    if cmd.parsed.value("raw"):
        return _raw(cmd, "PUT")
    if not cmd.parsed.flag("force"):
        return _objects(cmd, args, "update")

    def build(m: Manifest) -> list[Operation]:
        note = " (--force deletes and recreates it)"
        return [cmd.manifest(m, "delete", note=note), cmd.manifest(m, "create", create=True, note=note)]

    return _objects(cmd, args, "delete", from_files=build)


def _get(cmd: _Command, args: list[str]) -> list[Operation]:
    if cmd.parsed.value("raw"):
        return _raw(cmd, "GET")
    pairs = _pairs(args, "get")
    # a kind computed when the command runs may be secrets
    secrets = [(k, n) for k, n in pairs if not is_known(k) or resource_of(k) == "secrets"]
    ops = _from_files(cmd, lambda m: [cmd.manifest(m, "get secrets")] if m.resource == "secrets" else [])
    for _, name in secrets:
        if name is None:
            ops.append(cmd.op(cmd.container("secrets"), "list secrets", contents=True,
                              note="kubectl get secrets returns every secret's data"))
        else:
            ops.append(cmd.obj("secrets", name, "get secrets", note="kubectl get secret returns its data"))
    return ops


def _labels(cmd: _Command, args: list[str]) -> list[Operation]:
    """label, annotate, taint: the trailing KEY=VALUE, KEY:EFFECT and KEY- words are not names."""
    names = [a for a in args if not ("=" in a or a.endswith("-") or (cmd.verb == "taint" and ":" in a))]
    ops = _objects(cmd, names, "patch")
    if cmd.verb == "taint" and any(a.endswith(":NoExecute") for a in args):
        ops.append(_eviction(cmd, "a NoExecute taint evicts the pods that do not tolerate it"))
    return ops


def _set(cmd: _Command, args: list[str]) -> list[Operation]:
    what = args[0] if args else ""
    if what not in ("image", "env", "resources", "selector", "serviceaccount", "sa", "subject"):
        raise CannotRead(f"kubectl set {what or '(nothing)'} is not a set envlabel knows")
    names = [a for a in args[1:] if not ("=" in a or a.endswith("-") or " " in a)]
    if what in ("serviceaccount", "sa") and not cmd.parsed.values("filename"):
        names = names[:-1]  # the last word is the service account
    return _objects(cmd, names, "patch")


def _rollout(cmd: _Command, args: list[str]) -> list[Operation]:
    what = args[0] if args else ""
    if what in ("status", "history"):
        return []
    if what not in ("restart", "undo", "pause", "resume"):
        raise CannotRead(f"kubectl rollout {what or '(nothing)'} is not a rollout envlabel knows")
    # `rollout restart deployment` with no name restarts every deployment of the namespace
    return _objects(cmd, args[1:], "patch", names_required=what != "restart")


def _nodes(cmd: _Command, args: list[str]) -> list[Operation]:
    """cordon, uncordon, drain: the nodes named or selected."""
    names = [a.split("/", 1)[1] if a.startswith(("node/", "nodes/")) else a for a in args]
    if not names and not cmd.bulk():
        raise CannotRead(f"kubectl {cmd.verb} names no node")
    ops = _objects(cmd, ["nodes", *names], "patch")
    if cmd.verb == "drain":
        ops.append(_eviction(cmd, "kubectl drain evicts every pod on the node, in any namespace"))
    return ops


def _eviction(cmd: _Command, note: str) -> Operation:
    return cmd.op(f"k8s://{cmd.cluster}", "create pods/eviction", contents=True, note=note)


def _connect(cmd: _Command, args: list[str]) -> list[Operation]:
    """exec, attach, port-forward: the pod (or TYPE/NAME: one of its pods) opened."""
    action = _CONNECT[cmd.verb]
    if cmd.parsed.values("filename"):
        return _from_files(cmd, lambda m: [cmd.manifest(m, action)])
    if not args:
        raise CannotRead(f"kubectl {cmd.verb} names no pod")
    return [_pod(cmd, args[0], action)]


def _pod(cmd: _Command, name: str, action: str) -> Operation:
    kind, slash, rest = name.partition("/")
    resource, name = (resource_of(kind), rest) if slash else ("pods", name)
    note = "" if resource == "pods" else f"kubectl {cmd.verb} {kind}/{name} opens one of its pods: checked on it"
    return cmd.obj(resource, name, action, note=note)


def _cp(cmd: _Command, args: list[str]) -> list[Operation]:
    ops = []
    for arg in args[:2]:
        spec, colon, _path = arg.partition(":")
        if colon and spec and not arg.startswith(("/", ".", "~")):
            namespace, slash, pod = spec.rpartition("/")
            ops.append(cmd.obj("pods", pod, "create pods/exec", note="kubectl cp runs tar in the pod",
                               namespace=namespace if slash else None))
    if not ops:
        raise CannotRead("kubectl cp names no pod (POD:PATH or NAMESPACE/POD:PATH)")
    return ops


def _debug(cmd: _Command, args: list[str]) -> list[Operation]:
    if not args:
        raise CannotRead("kubectl debug names no pod or node")
    if cmd.parsed.value("copy-to"):
        return [_create_here(cmd, f"kubectl debug --copy-to creates a copy of {args[0]}")]
    kind, slash, name = args[0].partition("/")
    if slash and resource_of(kind) == "nodes":
        return [cmd.obj("nodes", name, "create pods/exec",
                        note="kubectl debug node/... runs a privileged pod on the node's host"),
                _create_here(cmd, "the debugging pod")]
    return [_pod(cmd, args[0], "create pods/exec")]


def _certificate(cmd: _Command, args: list[str]) -> list[Operation]:
    if args[:1] not in (["approve"], ["deny"]):
        raise CannotRead(f"kubectl certificate {' '.join(args[:1]) or '(nothing)'} is not one envlabel knows")
    return _objects(cmd, ["certificatesigningrequests", *args[1:]] if args[1:] else [],
                    "update certificatesigningrequests/approval")


def _auth(cmd: _Command, args: list[str]) -> list[Operation]:
    if args[:1] in (["can-i"], ["whoami"]):
        return []
    if args[:1] == ["reconcile"]:
        return _objects(cmd, [], "patch")
    raise CannotRead(f"kubectl auth {' '.join(args[:1]) or '(nothing)'} is not one envlabel knows")


def _proxy(cmd: _Command, args: list[str]) -> list[Operation]:
    raise CannotRead("kubectl proxy serves the cluster's whole API on a local port, and envlabel cannot see the "
                     "requests made through it; run the kubectl commands themselves instead")


def _raw(cmd: _Command, method: str) -> list[Operation]:
    path = cmd.parsed.value("raw") or ""
    effect = api_request(cmd.cluster, method, path)
    if effect is None:
        return []
    return [cmd.op(effect.target, effect.action, contents=effect.contents, note=f"kubectl --raw {method} {path}")]


def _patch(cmd: _Command, args: list[str]) -> list[Operation]:
    return _objects(cmd, args, "patch")


def _edit(cmd: _Command, args: list[str]) -> list[Operation]:
    return _objects(cmd, args, "patch", names_required=False)


def _dedupe(ops: list[Operation]) -> list[Operation]:
    seen: set[tuple[str, str, bool]] = set()
    kept = []
    for op in ops:
        key = (op.target, op.action, op.contents)
        if key not in seen:
            seen.add(key)
            kept.append(op)
    return kept


_HANDLERS: dict[str, Callable[[_Command, list[str]], list[Operation]]] = {
    "get": _get, "delete": _delete, "apply": _apply, "create": _create, "replace": _replace, "patch": _patch,
    "edit": _edit, "label": _labels, "annotate": _labels, "taint": _labels, "set": _set, "scale": _patch,
    "rollout": _rollout, "cordon": _nodes, "uncordon": _nodes, "drain": _nodes, "exec": _connect,
    "attach": _connect, "port-forward": _connect, "cp": _cp, "debug": _debug, "run": _create_in_namespace,
    "expose": _create_in_namespace, "autoscale": _create_in_namespace, "certificate": _certificate, "auth": _auth,
    "proxy": _proxy,
}
