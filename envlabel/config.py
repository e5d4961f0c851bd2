"""The configuration schema: one YAML file, overridable by ``ENVLABEL_`` variables.

Precedence, highest first: ``ENVLABEL_<KEY>`` environment variables (nested
keys joined by ``__``, values parsed as YAML: ``ENVLABEL_SCHEDULE__INTERVAL=5m``,
``ENVLABEL_ENVIRONMENTS='[production, dr, staging, sandbox]'``), the file
(``--config``, else ``$ENVLABEL_CONFIG``, else ``./envlabel.yaml``), defaults.
Every model rejects unknown keys; errors name the field path.

Only a variable whose first part is a top-level key is read as config
(``ENVLABEL_STORE_POOL_SIZE`` is ``store_pool_size``); the SDK's
(``ENVLABEL_URL``, ``ENVLABEL_TOKEN``, ``ENVLABEL_FAIL_OPEN``) and anything
else a shell may hold (``ENVLABEL_CMD``) are left alone, and one that looks
like a misspelt key is logged as a warning naming the nearest key. Reading the file and the
variables (YAML without aliases, at most 1 MiB and 32 levels deep) is :mod:`envlabel.config_file`'s.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from envlabel.config_file import env_overrides, merge, read_config_file
from envlabel.errors import ConfigError
from envlabel.records import ActionClass, Decision, Mode

_DURATION = re.compile(r"^\s*(\d{1,30})\s*(ms|s|m|h|d)\s*$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: the longest duration any setting accepts (a hundred years: "never", without overflowing a date)
MAX_DURATION = timedelta(days=36500)


class DurationTooLong(ValueError):
    """A well-formed duration longer than :data:`MAX_DURATION`."""


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d`` (or a number of seconds) -> timedelta, from 0 to :data:`MAX_DURATION`.

    Raises ValueError with a message for anything else, however large (never OverflowError).

    >>> parse_duration("15m"), parse_duration(90)
    (datetime.timedelta(seconds=900), datetime.timedelta(seconds=90))
    """
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds is None or math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration; write it as 30s, 15m, 2h or 7d")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration is written 30s, 15m, 2h or 7d")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong(f"{value!r} is longer than {format_duration(MAX_DURATION)}, the longest duration "
                              "envlabel accepts")
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest way to write ``value`` (``15m``, ``7d``; ``200ms`` below a second)."""
    if value.microseconds:
        return f"{round(value.total_seconds() * 1000)}ms"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


ACTION_CLASSES: tuple[ActionClass, ...] = ("read", "create", "modify", "delete")
#: the policy row key deciding a delete-class action (a data-destroying modify included) whose recovery is not
#: ``true`` (irreversible, or not known to be recoverable); a row without it decides every delete alike
IRREVERSIBLE: Final = "irreversible"
#: what a policy row may decide: each action class, and irreversible deletes
PolicyKey = Literal["read", "create", "modify", "delete", "irreversible"]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]


def _bounded(least: timedelta, most: timedelta = MAX_DURATION, *, off: bool = False,
             why: str = "") -> AfterValidator:
    """A range check with a message; ``off``: ``0s`` is also accepted (it turns the setting off)."""

    def check(value: timedelta) -> timedelta:
        if off and not value:
            return value
        if value < least:
            zero = "; 0s turns it off" if off else ""
            raise ValueError(f"{format_duration(value)} is too short: at least {format_duration(least)}{zero}{why}")
        if value > most:
            raise ValueError(f"{format_duration(value)} is too long: at most {format_duration(most)}{why}")
        return value

    return AfterValidator(check)


#: how often a source is scanned: every scan lists the whole estate through the cloud's API
ScanInterval = Annotated[Duration, _bounded(timedelta(seconds=10), why=" (each scan lists the whole estate "
                                                                       "through the cloud API; use minutes)")]
#: a positive duration (zero would mean "at once, all the time")
Positive = Annotated[Duration, _bounded(timedelta(milliseconds=100))]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def default_store_url() -> str:
    """``sqlite:///$XDG_DATA_HOME/envlabel/envlabel.db`` (``~/.local/share/envlabel/envlabel.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'envlabel' / 'envlabel.db'}"


DEFAULT_ENVIRONMENTS = ("production", "staging", "sandbox")
DEFAULT_TAG_KEYS = ("environment", "env", "stage", "deployment.environment.name")
DEFAULT_SYNONYMS: dict[str, list[str]] = {
    "production": ["production", "prod", "prd", "live"],
    "staging": ["staging", "stage", "stg", "preprod", "pre-prod", "uat"],
    "sandbox": ["sandbox", "sbx", "dev", "development", "test", "testing", "qa", "playground"],
}
DEFAULT_POLICY: dict[str, dict[PolicyKey, Decision]] = {
    "production": {"read": "allow", "create": "require_approval", "modify": "require_approval",
                   "delete": "deny"},
    "staging": {"read": "allow", "create": "allow", "modify": "allow", "delete": "require_approval"},
    "sandbox": {"read": "allow", "create": "allow", "modify": "allow", "delete": "allow"},
}


class Schedule(Model):
    interval: ScanInterval = timedelta(minutes=15)
    jitter: Duration = timedelta(seconds=30)


#: what ``printf %s "$TOKEN" | sha256sum`` prints when TOKEN is unset: a token nobody has to guess
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


#: a principal's name: a person, an agent, a pipeline, a Kubernetes user (``system:serviceaccount:ns:sa``)
PrincipalName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s\x00-\x1f]+$")]


class ApiToken(Model):
    name: str = Field(min_length=1)
    role: Literal["reader", "admin"]
    #: hex SHA-256 of the bearer token; the token itself is never stored.
    sha256: str
    #: who calls with this token (default: the token's name); what it claims (ENVLABEL_PRINCIPAL) only narrows
    principal: PrincipalName | None = None
    #: the groups its principal belongs to (grants may name them as group:NAME)
    groups: list[PrincipalName] = []

    @property
    def principal_name(self) -> str:
        return self.principal or self.name

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("not a SHA-256: write the token's hash as 64 lowercase hex digits; "
                             "`envlabel token create` prints a token and its entry")
        if value == EMPTY_SHA256:
            raise ValueError(f"{EMPTY_SHA256} is the SHA-256 of the empty string: $TOKEN was probably unset "
                             "when you hashed it; create a token with `envlabel token create`")
        return value


class Api(Model):
    tokens: list[ApiToken] = []
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_batch: int = Field(1000, gt=0)
    #: how long a client may take to send a request's headers, and then its body: past it the server answers
    #: 408 and closes the connection, so a stalled or trickled upload cannot hold a connection open
    read_timeout: Duration = Field(timedelta(seconds=10), ge=timedelta(milliseconds=100), le=timedelta(minutes=10))


WebhookEvent = Literal["environment_changed", "finding", "approval_requested", "approval_decided"]


class Webhook(Model):
    url: str = Field(pattern=r"^https?://")
    #: name of an environment variable holding the HMAC secret
    secret_env: str | None = None
    events: list[WebhookEvent] = ["environment_changed", "finding", "approval_requested", "approval_decided"]
    #: approval events only for requests in these environments (None: every environment); the approvers'
    #: channel of each environment is a webhook of its own
    environments: list[str] | None = None


class Principal(Model):
    """A principal known by name (a CLI user, an agent claiming ENVLABEL_PRINCIPAL without a token of its own)."""

    groups: list[PrincipalName] = []


class DecisionLog(Model):
    """The record of every check (docs/approvals.md, "Decision log")."""

    enabled: bool = True
    #: decisions older than this are deleted by the daemon
    retention: Annotated[Duration, _bounded(timedelta(hours=1))] = timedelta(days=90)
    #: a batch is written when it holds this many decisions, or ``flush_interval`` after its first
    batch_size: int = Field(500, ge=1, le=100_000)
    flush_interval: Annotated[Duration, _bounded(timedelta(milliseconds=10), timedelta(minutes=1))] = \
        timedelta(milliseconds=200)
    #: decisions waiting to be written at most; past it the oldest are dropped, counted and logged (a check never
    #: waits for the log)
    max_queue: int = Field(100_000, ge=100, le=10_000_000)


class Approvals(Model):
    """Approval requests for ``require_approval`` answers (docs/approvals.md)."""

    #: a request not decided by then expires; an approved one must be used by then
    expire_after: Annotated[Duration, _bounded(timedelta(minutes=1), timedelta(days=30))] = timedelta(hours=24)
    #: where approvers reach this server's approval page (links in notifications): https://envlabel.example.com
    base_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")


#: grants: principal (or ``group:NAME``) -> environment -> the classes it may do there at most (read always)
Grant = dict[str, list[ActionClass]]


class SourceBase(Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    interval: ScanInterval | None = None


class AwsSource(SourceBase):
    type: Literal["aws"]
    endpoint_url: str | None = None
    regions: list[str] = Field(default_factory=lambda: ["us-east-1"], min_length=1)
    organization: bool = False
    #: role name (or ARN template with {account}) assumed in each member account
    assume_role: str = "EnvlabelReadOnly"
    profile: str | None = None
    ou_environments: dict[str, str] = {}
    account_environments: dict[Annotated[str, Field(pattern=r"^\d{12}$")], str] = {}
    #: read what decides whether a destructive change can be undone (snapshots, versioning, deletion and
    #: termination protection...) and list EBS volumes and KMS keys; false: the scan of labels alone, fewer calls
    recovery_facts: bool = True


class KubernetesResource(Model):
    group: str = ""
    version: str = "v1"
    resource: str
    namespaced: bool = True


class KubernetesSource(SourceBase):
    type: Literal["kubernetes"]
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    cluster: str | None = None
    environment: str | None = None
    parent: str | None = None
    watch: bool = True
    resources: list[KubernetesResource] = []

    @property
    def cluster_name(self) -> str:
        return self.cluster or self.name


#: the Cloud Asset types a GCP source searches by default: the resources agents act on most
DEFAULT_GCP_ASSET_TYPES: tuple[str, ...] = (
    "compute.googleapis.com/Instance", "compute.googleapis.com/Disk", "storage.googleapis.com/Bucket",
    "sqladmin.googleapis.com/Instance", "container.googleapis.com/Cluster", "bigquery.googleapis.com/Dataset",
    "pubsub.googleapis.com/Topic", "run.googleapis.com/Service", "spanner.googleapis.com/Instance",
    "secretmanager.googleapis.com/Secret",
)
_GCP_ASSET_TYPE = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*\.googleapis\.com/[A-Z][A-Za-z0-9]*$")


class GcpSource(SourceBase):
    type: Literal["gcp"]
    organization: str = Field(pattern=r"^(organizations/)?\d+$")
    api_endpoint: str | None = None
    #: Cloud Asset types searched below the projects (SERVICE.googleapis.com/Type, as Cloud Asset names them);
    #: [] scans the organization, folders and projects only
    asset_types: list[str] = Field(default_factory=lambda: list(DEFAULT_GCP_ASSET_TYPES))

    @field_validator("asset_types")
    @classmethod
    def _check_asset_types(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if not _GCP_ASSET_TYPE.match(t)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not a Cloud Asset type; write SERVICE.googleapis.com/Type "
                             "as Cloud Asset Inventory names it, e.g. compute.googleapis.com/Instance "
                             "(`gcloud asset list-assets` lists them)")
        return value

    @property
    def organization_name(self) -> str:
        org = self.organization
        return org if org.startswith("organizations/") else f"organizations/{org}"


Source = Annotated[AwsSource | KubernetesSource | GcpSource, Field(discriminator="type")]


class LeaderElection(Model):
    """Which replica scans when several share one PostgreSQL store (docs/postgresql.md).

    ``auto``: none for SQLite; for PostgreSQL a Kubernetes Lease when a kubernetes source is configured, else
    a PostgreSQL advisory lock. The Lease is read and written with ``kubeconfig``/``context``/``in_cluster``
    when set, else with the first kubernetes source's, else in-cluster when running in a pod.
    """

    kind: Literal["auto", "lease", "advisory_lock", "none"] = "auto"
    lease_name: str = Field("envlabel-leader", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    #: the Lease's namespace; default: the pod's own (its service account's), else "default"
    namespace: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool | None = None
    #: a follower takes over once the leader has not renewed for this long
    lease_duration: Positive = timedelta(seconds=15)
    #: the leader steps down when it could not renew for this long (less than lease_duration)
    renew_deadline: Positive = timedelta(seconds=10)
    #: how often the leader renews and followers try
    retry_period: Positive = timedelta(seconds=2)

    @model_validator(mode="after")
    def _check_periods(self) -> LeaderElection:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("retry_period < renew_deadline < lease_duration must hold, so a "
                             "leader steps down before a follower takes over")
        return self


class Admission(Model):
    """Who and where the Kubernetes admission webhook always admits (docs/kubernetes.md, "Admission").

    Patterns match usernames and groups with ``*`` wildcards; ``{namespace}`` is envlabel's own namespace."""

    #: envlabel's own namespace (never blocked, like kube-system); default: the pod's service-account namespace,
    #: else "envlabel"
    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    #: principals that always pass: envlabel itself and the control plane's own controllers
    exempt_usernames: list[str] = Field(default_factory=lambda: [
        "system:serviceaccount:{namespace}:envlabel", "system:apiserver", "system:kube-controller-manager",
        "system:kube-scheduler", "system:serviceaccount:kube-system:*"])
    #: groups that always pass (kubelets update their pods' status); system:masters is deliberately not here
    exempt_groups: list[str] = Field(default_factory=lambda: ["system:nodes"])
    #: people who may act on production through the cluster when they must; every pass is logged
    break_glass_groups: list[str] = []
    #: namespaces never blocked besides kube-system and envlabel's own (which always are)
    exempt_namespaces: list[str] = []
    #: true: the admission path needs a reader token even over TLS (give kube-apiserver one in its kubeconfig)
    require_token: bool = False


ExportKind = Literal["aws-scp", "aws-tag-policy", "gcp-deny", "k8s-vap"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("aws-scp", "aws-tag-policy", "gcp-deny", "k8s-vap")


class Export(Model):
    """What ``envlabel export`` generates from the labels, and where the daemon keeps it (docs/export.md)."""

    #: the daemon rewrites this directory after every scan that changed a label (None: it never writes)
    directory: str | None = None
    #: the kinds the daemon writes there
    kinds: list[ExportKind] = Field(default_factory=lambda: list(EXPORT_KINDS), min_length=1)
    #: the environments whose OUs, accounts, folders, projects and namespaces get enforcement
    environments: list[str] = Field(default_factory=lambda: ["production"], min_length=1)
    #: deny the modify class too, not only delete
    include_modify: bool = False
    #: AWS principals the SCPs never deny (ArnNotLike aws:PrincipalArn; * wildcards allowed)
    break_glass: list[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:(iam|sts)::(\d{12}|\*):")]] = []
    #: the one AWS role allowed to change the environment tag keys (None: nobody)
    labeler_role: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::(\d{12}|\*):role/")
    #: GCP principals the deny policies except (principal://..., principalSet://...)
    gcp_exception_principals: list[Annotated[str, Field(pattern=r"^principal(Set)?://")]] = []
    #: Kubernetes groups the ValidatingAdmissionPolicy lets through
    k8s_exempt_groups: list[str] = []
    #: AWS resource types the tag policy enforces on (ec2:instance, ...); empty: it only reports
    enforced_for: list[str] = []


class Config(Model):
    store: str = Field(default_factory=default_store_url, pattern=r"^(sqlite|postgresql|postgres)://")
    #: connections each process keeps to a PostgreSQL store (its API threads share them)
    store_pool_size: int = Field(10, ge=1, le=1000)
    environments: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVIRONMENTS), min_length=1)
    tag_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_TAG_KEYS), min_length=1)
    synonyms: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_SYNONYMS))
    #: extra name tokens per environment (name evidence only); the synonyms always count.
    name_tokens: dict[str, list[str]] = {}
    stale_after: Positive = timedelta(hours=24)
    #: how long a check waits for the one read-only lookup of a never-seen target inside a known container
    #: (its own tags, through the source that scanned the container); 0s turns lookups off
    lookup_timeout: Annotated[Duration, _bounded(timedelta(milliseconds=100), timedelta(minutes=1), off=True,
                                                 why=" (a check waits for the lookup)")] = timedelta(seconds=2)
    schedule: Schedule = Schedule()
    policy: dict[str, dict[PolicyKey, Decision]] = Field(
        default_factory=lambda: {env: dict(row) for env, row in DEFAULT_POLICY.items()})
    approvers: dict[str, list[str]] = {}
    #: enforce, or audit (shadow mode: nothing blocked, every decision logged with what would have happened)
    mode: Mode = "enforce"
    principals: dict[PrincipalName, Principal] = {}
    grants: dict[PrincipalName, Grant] = {}
    decisions: DecisionLog = DecisionLog()
    approvals: Approvals = Approvals()
    api: Api = Api()
    admission: Admission = Admission()
    export: Export = Export()
    webhooks: list[Webhook] = []
    sources: list[Source] = []
    leader_election: LeaderElection = LeaderElection()

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_environments(cls, data: Any) -> Any:
        """Each configured environment the config does not describe keeps its default synonyms and policy row.

        Writing ``policy: {dr: ...}`` adds a row; it does not drop production's. A default word that names
        another configured environment, or that the config gives to another environment, is dropped from
        the defaults (``development`` is not a sandbox synonym once it is an environment).
        """
        if not isinstance(data, dict):
            return data
        envs = data.get("environments", list(DEFAULT_ENVIRONMENTS))
        synonyms, policy = data.get("synonyms", {}), data.get("policy", {})
        if not (isinstance(envs, list) and isinstance(synonyms, dict) and isinstance(policy, dict)):
            return data  # wrong shapes: let field validation name them
        envs = [str(e) for e in envs]
        claimed = {e.lower() for e in envs} | {str(w).lower() for words in synonyms.values()
                                               if isinstance(words, list) for w in words}
        data = dict(data)
        data["synonyms"] = {e: [w for w in DEFAULT_SYNONYMS[e] if w == e or w not in claimed]
                            for e in envs if e in DEFAULT_SYNONYMS and e not in synonyms} | synonyms
        data["policy"] = {e: dict(DEFAULT_POLICY[e]) for e in envs if e in DEFAULT_POLICY and e not in policy} | policy
        return data

    @model_validator(mode="after")
    def _check_environment_names(self) -> Config:
        envs = self.environments
        problems: list[str] = []
        if len(set(envs)) != len(envs):
            problems.append(f"environments: listed twice in {envs}")
        if "unknown" in envs:
            problems.append("environments: 'unknown' is reserved for targets with no signal")
        claimed: dict[str, str] = {e.lower(): e for e in envs}  # an environment's own name is its synonym
        for env, words in self.synonyms.items():
            if env not in envs:
                problems.append(f"synonyms.{env}: not one of the environments {envs}")
            for word in words:
                other = claimed.setdefault(word.lower(), env)
                if other != env:
                    what = "the name of environment" if word.lower() == other.lower() else "also a synonym of"
                    problems.append(f"synonyms.{env}: {word!r} is {what} {other!r}")
        for section, mapping in (("name_tokens", self.name_tokens), ("policy", self.policy),
                                 ("approvers", self.approvers)):
            problems += [f"{section}.{env}: not one of the environments {envs}"
                         for env in mapping if env not in envs]
        problems += [f"policy: no entry for environment {env!r}" for env in envs if env not in self.policy]
        problems += [f"grants.{who}.{env}: not one of the environments {envs}"
                     for who, grant in self.grants.items() for env in grant if env not in envs]
        problems += [f"webhooks.{i}.environments: {env!r} is not one of the environments {envs}"
                     for i, hook in enumerate(self.webhooks) for env in hook.environments or () if env not in envs]
        names = [s.name for s in self.sources]
        problems += [f"sources: name {n!r} used twice" for n in sorted({n for n in names if names.count(n) > 1})]
        for i, src in enumerate(self.sources):
            declared: dict[str, str] = {}
            if isinstance(src, AwsSource):
                declared = {f"ou_environments.{k}": v for k, v in src.ou_environments.items()}
                declared |= {f"account_environments.{k}": v for k, v in src.account_environments.items()}
            elif isinstance(src, KubernetesSource) and src.environment:
                declared = {"environment": src.environment}
            problems += [f"sources.{i}.{path}: {env!r} is not one of the environments {envs}"
                         for path, env in declared.items() if env not in envs]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _check_policy_rows(self) -> Config:
        """A class a row leaves out would be denied without anyone having decided so: name it."""
        problems = [f"policy.{env}: no decision for {', '.join(missing)} (every class needs allow, "
                    "require_approval or deny)" for env, row in self.policy.items()
                    if (missing := [c for c in ACTION_CLASSES if c not in row])]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def source(self, name: str) -> Source:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("ENVLABEL_CONFIG"):
        return Path(environ["ENVLABEL_CONFIG"])
    default = Path("envlabel.yaml")
    return default if default.exists() else None


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration, raising :class:`ConfigError` with every problem."""
    environ = os.environ if environ is None else environ
    resolved = config_path(str(path) if path else None, environ)
    data: Any = {}
    if resolved is not None:
        origin = "--config" if path else ("$ENVLABEL_CONFIG" if environ.get("ENVLABEL_CONFIG") else "./envlabel.yaml")
        data = read_config_file(resolved, origin)
        if data is None:  # an empty file: the defaults
            data = {}
        if not isinstance(data, dict):
            raise ConfigError([("(file)", "the top level must be a mapping of keys such as "
                                "store, environments, sources")], str(resolved))
    overrides = env_overrides(environ, frozenset(Config.model_fields))
    return config_from_dict(merge(data, overrides), str(resolved) if resolved else None)


def config_from_dict(data: dict[str, Any], path: str | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), path) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        # drop the discriminator tag pydantic inserts ("sources.0.aws.regions" -> "sources.0.regions")
        loc = [p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1].isdigit() and p in
                                                   ("aws", "gcp", "kubernetes"))]
        message = error["msg"].removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":  # a mapping's key is wrong, not its value
            loc, message = loc[:-1], f"this key is invalid: {message}"
        if error["type"] == "extra_forbidden":
            message = "unknown key; remove it or check its spelling"
        if not loc:  # model-level validator: split our joined problems
            problems += [tuple(p.split(": ", 1)) if ": " in p else ("(config)", p)  # type: ignore[misc]
                         for p in message.split("; ")]
            continue
        problems.append((".".join(loc), message))
    return problems
