"""Kubernetes shared by the kubectl, helm and HTTP readers: resource names as kubectl accepts them, manifests
(``-f`` files and directories, simple kustomizations), and a raw API request read as an operation.

Resources are named as envlabel's ``k8s://`` targets name them: the plural resource, without its API group
(``deploy``, ``Deployment``, ``deployments.apps``, ``deployments.v1.apps`` are all ``deployments``; a custom
resource's ``certificates.cert-manager.io`` is ``certificates``), as the Kubernetes guard names them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from envlabel.commands import UNKNOWN, CommandContext, is_known, shown
from envlabel.commands.options import CannotRead
from envlabel.errors import TargetError
from envlabel.targets import K8S_KIND_ALIASES, k8s_target, parse_target

MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_MANIFEST_FILES = 2000
MAX_OBJECTS = 10000
_KUSTOMIZE_DEPTH = 8

#: kubectl's short names and singulars beyond envlabel.targets' (kubectl api-resources)
_ALIASES: dict[str, str] = {
    **K8S_KIND_ALIASES,
    "hpa": "horizontalpodautoscalers", "horizontalpodautoscaler": "horizontalpodautoscalers",
    "pdb": "poddisruptionbudgets", "poddisruptionbudget": "poddisruptionbudgets",
    "netpol": "networkpolicies", "networkpolicy": "networkpolicies",
    "sc": "storageclasses", "storageclass": "storageclasses",
    "pc": "priorityclasses", "priorityclass": "priorityclasses",
    "ingressclass": "ingressclasses", "runtimeclass": "runtimeclasses", "deviceclass": "deviceclasses",
    "ep": "endpoints", "endpoint": "endpoints", "ev": "events", "event": "events",
    "limits": "limitranges", "limitrange": "limitranges", "quota": "resourcequotas", "resourcequota": "resourcequotas",
    "crd": "customresourcedefinitions", "crds": "customresourcedefinitions",
    "customresourcedefinition": "customresourcedefinitions",
    "csr": "certificatesigningrequests", "certificatesigningrequest": "certificatesigningrequests",
    "rc": "replicationcontrollers", "replicationcontroller": "replicationcontrollers",
    "role": "roles", "rolebinding": "rolebindings", "clusterrole": "clusterroles",
    "clusterrolebinding": "clusterrolebindings", "lease": "leases", "podtemplate": "podtemplates",
    "controllerrevision": "controllerrevisions", "endpointslice": "endpointslices",
    "validatingwebhookconfiguration": "validatingwebhookconfigurations",
    "mutatingwebhookconfiguration": "mutatingwebhookconfigurations", "apiservice": "apiservices",
    "csidriver": "csidrivers", "csinode": "csinodes", "volumeattachment": "volumeattachments",
    "componentstatus": "componentstatuses", "cs": "componentstatuses",
}
#: resources that are never inside a namespace (a custom resource named Cluster* is taken as one too)
CLUSTER_SCOPED = frozenset({
    "namespaces", "nodes", "persistentvolumes", "clusterroles", "clusterrolebindings", "customresourcedefinitions",
    "storageclasses", "priorityclasses", "ingressclasses", "runtimeclasses", "deviceclasses",
    "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "validatingadmissionpolicies",
    "validatingadmissionpolicybindings", "mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
    "apiservices", "certificatesigningrequests", "csidrivers", "csinodes", "volumeattachments", "flowschemas",
    "prioritylevelconfigurations", "componentstatuses", "selfsubjectaccessreviews", "tokenreviews",
    "subjectaccessreviews", "selfsubjectreviews", "ipaddresses", "servicecidrs", "clustertrustbundles",
})
#: kubectl's category ``all``
ALL_CATEGORY = ("pods", "services", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
                "replicationcontrollers", "horizontalpodautoscalers")
_VERSION = re.compile(r"^v\d+((alpha|beta)\d*)?$")
_KUSTOMIZE_KEYS = frozenset({"apiVersion", "kind", "resources", "namespace", "commonLabels", "labels",
                             "commonAnnotations", "images", "replicas", "buildMetadata"})
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: a YAML line's value after ``key:`` or ``-`` (removed, what is left are the keys and the structure)
_VALUES = re.compile(r"(?m)^(\s*(?:-\s+)+(?:[^\s:#][^:]*:\s+)?|\s*(?:-\s+)*[^\s:#-][^:]*:\s+)\S.*$")


def resource_of(kind: str) -> str:
    """The plural resource of a TYPE or KIND as kubectl accepts it.

    >>> [resource_of(k) for k in ("deploy", "Deployment", "deployments.v1.apps", "NetworkPolicy", "Ingress")]
    ['deployments', 'deployments', 'deployments', 'networkpolicies', 'ingresses']
    >>> resource_of("certificate.cert-manager.io")
    'certificates'
    """
    name = kind.lower().partition(".")[0]
    return _ALIASES.get(name) or _plural(name)


def is_cluster_scoped(resource: str) -> bool:
    return resource in CLUSTER_SCOPED or (resource.startswith("cluster") and resource not in _ALIASES)


def _plural(word: str) -> str:
    if word.endswith(("ss", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("s"):
        return word
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object of a manifest file: its resource, name (None: ``generateName``), namespace as written."""

    kind: str
    resource: str
    name: str | None
    namespace: str | None
    source: str

    def describe(self, namespace: str) -> str:
        where = "" if is_cluster_scoped(self.resource) else f"{self.namespace or namespace}/"
        return f"{self.source}: {self.kind} {where}{self.name or '(generateName)'}"


def check_name(name: str, where: str) -> str:
    from envlabel.commands.kubeconfig import K8S_NAME

    if not K8S_NAME.match(name):
        raise CannotRead(f"{where}: {name!r} is not a Kubernetes name")
    return name


def object_target(cluster: str, resource: str, name: str, namespace: str) -> str:
    """The ``k8s://`` target of one object; cluster-scoped resources ignore ``namespace`` as kubectl does."""
    check_name(name, resource)
    if is_cluster_scoped(resource):
        return k8s_target(cluster, resource, name)
    return k8s_target(cluster, resource, name, check_name(namespace, "namespace"))


def namespace_target(cluster: str, namespace: str) -> str:
    return k8s_target(cluster, "namespaces", check_name(namespace, "namespace"))


def read_manifests(filenames: list[str], context: CommandContext, *, recursive: bool = False) -> list[Manifest]:
    """Every object of ``-f`` files and directories (a directory's ``.yaml``, ``.yml`` and ``.json`` files, its
    subdirectories too with ``-R``). Standard input, URLs and what is not a manifest cannot be read."""
    found: list[Manifest] = []
    for filename in filenames:
        if not is_known(filename):
            raise CannotRead(f"-f {shown(filename)} is computed when the command runs: name the file")
        if filename == "-":
            found.extend(_stdin_objects(context.stdin))
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*://", filename):
            raise CannotRead(f"-f {filename} is fetched from the network, which envlabel does not do: download it "
                             "and pass -f FILE")
        for path in _files(_absolute(filename, context), recursive):
            found.extend(_objects(path, filename if path == _absolute(filename, context) else path))
            if len(found) > MAX_OBJECTS:
                raise CannotRead(f"more than {MAX_OBJECTS} objects in -f {filename}")
    return found


def read_kustomization(directory: str, context: CommandContext, depth: int = 0) -> list[Manifest]:
    """The objects of a kustomization that only lists local resources (and sets a namespace, labels, annotations,
    images): what ``-k DIR`` would send. Anything that renders names (prefixes, generators, patches, remote bases,
    Helm charts) cannot be read."""
    root = _absolute(directory, context)
    if depth > _KUSTOMIZE_DEPTH:
        raise CannotRead(f"-k {directory}: kustomizations nested more than {_KUSTOMIZE_DEPTH} deep")
    path = next((os.path.join(root, n) for n in _KUSTOMIZATION_FILES if os.path.isfile(os.path.join(root, n))), None)
    if path is None:
        raise CannotRead(f"-k {directory}: no kustomization.yaml there")
    documents = load_yaml_documents(_read(path), path)
    document = documents[0] if len(documents) == 1 else None
    if not isinstance(document, dict):
        raise CannotRead(f"{path} is not a kustomization (one YAML mapping)")
    unsupported = sorted(set(document) - _KUSTOMIZE_KEYS)
    if unsupported:
        raise CannotRead(f"{path} uses {', '.join(unsupported)}, which envlabel does not render: render it to a file "
                         f"(kubectl kustomize {directory} > rendered.yaml) and pass -f rendered.yaml")
    namespace = document.get("namespace")
    objects: list[Manifest] = []
    for entry in document.get("resources") or []:
        if not isinstance(entry, str) or "://" in entry or entry.startswith(("github.com/", "git@")):
            raise CannotRead(f"{path}: resource {entry!r} is not a local file, which envlabel does not fetch")
        local = os.path.join(root, entry)
        objects.extend(read_kustomization(local, context, depth + 1) if os.path.isdir(local)
                       else _objects(local, local))
    if isinstance(namespace, str) and namespace:
        objects = [Manifest(o.kind, o.resource, o.name, None if is_cluster_scoped(o.resource) else namespace,
                            o.source) for o in objects]
    return objects


def _stdin_objects(stdin: str | None) -> list[Manifest]:
    """The objects of ``-f -``: standard input as the line shows it (a here-document, ``< file``, ``echo |``).
    A value computed when the command runs (``image: $IMAGE``) is fine; one that names an object is not."""
    source = "-f - (standard input)"
    if stdin is None:
        raise CannotRead("-f - reads the manifests from standard input, which the command line does not show: "
                         "write them to a file and pass -f FILE")
    holes: list[str] = []

    def hole(match: re.Match[str]) -> str:
        holes.append(match.group())
        return f"envlabelunknown{len(holes)}x"

    text = re.sub(f"{UNKNOWN}[^{UNKNOWN}]*{UNKNOWN}", hole, stdin)
    objects = _manifests_of(load_yaml_documents(text.encode(), source), source)
    if holes and any("envlabelunknown" in f"{m.kind} {m.name} {m.namespace}" for m in objects):
        raise CannotRead(f"{source}: an object's kind, name or namespace is computed when the command runs "
                         f"({', '.join(shown(h) for h in holes[:3])}); write it out")
    if holes and "envlabelunknown" in _VALUES.sub(r"\1", text):
        # a hole where a key or a whole line goes may add a namespace or another object: not a value
        raise CannotRead(f"{source}: a value computed when the command runs stands where YAML keys go; write "
                         "the manifest out")
    return objects


def load_yaml_documents(raw: bytes, where: str) -> list[Any]:
    """Every YAML (or JSON) document of ``raw``; what does not parse cannot be read."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return [d for d in yaml.load_all(raw, Loader=loader) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise CannotRead(f"{where} is not YAML envlabel can read{line}: a template must be rendered first") from None


def _absolute(path: str, context: CommandContext) -> str:
    home = context.environ.get("HOME")
    if path.startswith("~") and home:
        path = home + path[1:]
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(context.cwd, path))


def _files(path: str, recursive: bool) -> Iterator[str]:
    if not os.path.isdir(path):
        yield path
        return
    count = 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        if not recursive:
            dirs.clear()
        for name in sorted(names):
            if name.endswith((".yaml", ".yml", ".json")):
                count += 1
                if count > MAX_MANIFEST_FILES:
                    raise CannotRead(f"more than {MAX_MANIFEST_FILES} manifest files under {path}")
                yield os.path.join(root, name)


def _read(path: str) -> bytes:
    try:
        if os.path.getsize(path) > MAX_MANIFEST_BYTES:
            raise CannotRead(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise CannotRead(f"cannot read {path}: {error.strerror}") from None


def _objects(path: str, source: str) -> list[Manifest]:
    return _manifests_of(load_yaml_documents(_read(path), source), source)


def _manifests_of(documents: list[Any], source: str) -> list[Manifest]:
    return [m for document in documents for m in _manifest_objects(document, source, 0)]


def _manifest_objects(document: Any, source: str, depth: int) -> list[Manifest]:
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str) or not document["kind"]:
        raise CannotRead(f"{source}: a document without a kind is not a Kubernetes manifest")
    kind: str = document["kind"]
    if kind == "List" or (kind.endswith("List") and isinstance(document.get("items"), list)):
        items = document.get("items") or []
        if depth > 0 or not isinstance(items, list):
            raise CannotRead(f"{source}: a {kind} whose items envlabel cannot read")
        return [m for item in items for m in _manifest_objects(item, source, depth + 1)]
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise CannotRead(f"{source}: a {kind} without metadata")
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not (isinstance(name, str) and name) and not isinstance(metadata.get("generateName"), str):
        raise CannotRead(f"{source}: a {kind} without metadata.name")
    return [Manifest(kind, resource_of(kind), name if isinstance(name, str) and name else None,
                     namespace if isinstance(namespace, str) and namespace else None, source)]


@dataclass(frozen=True, slots=True)
class ApiEffect:
    target: str
    action: str
    contents: bool


def api_request(cluster: str, method: str, path: str) -> ApiEffect | None:
    """What one raw API request does (the Kubernetes guard's reading, plus what it does not check: reading
    secrets returns their data, deleting a namespace or a collection deletes everything in it)."""
    from envlabel.guard.kubernetes import target_of

    method = method.upper()
    if method == "GET":
        secrets = _secrets_read(cluster, path)
        if secrets is not None:
            return secrets
    found = target_of(cluster, method, path)
    if found is None:
        return None
    target, action = found
    try:
        parse_target(target)
    except TargetError:
        raise CannotRead(f"{path} does not name a Kubernetes object envlabel can check") from None
    # deleting a namespace deletes everything in it
    whole_namespace = target.startswith(f"k8s://{cluster}/namespaces/") and target.count("/") == 4
    return ApiEffect(target, action, action == "deletecollection" or (action == "delete" and whole_namespace))


def _secrets_read(cluster: str, path: str) -> ApiEffect | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["api", "v1"]:
        return None
    rest = parts[2:]
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if rest[:1] != ["secrets"]:
        return None
    if len(rest) >= 2:
        if namespace is None:  # not an API path: the server answers 404
            return None
        return ApiEffect(object_target(cluster, "secrets", rest[1], namespace), "get secrets", False)
    return ApiEffect(namespace_target(cluster, namespace) if namespace else f"k8s://{cluster}", "list secrets", True)
