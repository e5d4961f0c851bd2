"""The configuration schema: one YAML file, overridable by ``ENVLABEL_`` variables.

Precedence, highest first: ``ENVLABEL_<KEY>`` environment variables (nested
keys joined by ``__``, values parsed as YAML: ``ENVLABEL_SCHEDULE__INTERVAL=5m``,
``ENVLABEL_ENVIRONMENTS='[production, dr, staging, sandbox]'``), the file
(``--config``, else ``$ENVLABEL_CONFIG``, else ``./envlabel.yaml``), defaults.
Every model rejects unknown keys; errors name the field path (``sources.2.type``), or the ``ENVLABEL_*``
variable whose value holds the mistake, in the user's words ("expected a list of strings, got a mapping"),
with the cross-field checks' problems in the same run (:data:`CROSS_CHECKS`).

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
import types
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from envlabel.config_file import ENV_PREFIX, EnvSetting, env_settings, merge, read_config_file
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

    @field_validator("store")
    @classmethod
    def _check_store_url(cls, value: str) -> str:
        """What opening the store would refuse, said while the config is read (``validate`` catches it)."""
        if value.startswith("sqlite://"):
            if value.removeprefix("sqlite://").removeprefix("/") in ("", "/"):
                raise ValueError(f"{value!r} names no file; write sqlite:////abs/path.db or sqlite:///rel.db")
        elif not urlsplit(value).path.strip("/"):
            raise ValueError(f"{redact_url(value)!r} names no database; write postgresql://USER@HOST:PORT/DB")
        return value

    @model_validator(mode="after")
    def _check_across_fields(self, info: ValidationInfo) -> Config:
        """Every check that reads several fields; :func:`config_from_dict` also runs those whose fields are
        valid when others are not, so one run reports everything (``info.context`` asks to skip them then)."""
        if info.context and info.context.get(_ONLY_FIELDS):
            return self
        problems = cross_field_problems(self)
        if problems:
            text = "; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems)
            raise PydanticCustomError(_CROSS_FIELD, "{text}", {"text": text, "problems": problems})
        return self

    def source(self, name: str) -> Source:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)


#: a place in the config: keys and list indexes from the top (``("sources", 2, "type")``)
Loc = tuple[str | int, ...]
#: one problem: where, and what is wrong in words that say what to do
Problem = tuple[Loc, str]
CrossCheck = Callable[[Config], list[Problem]]
_CROSS_FIELD: Final = "cross_field"
_ONLY_FIELDS: Final = "envlabel_only_fields"
#: each check that reads several fields, with the top-level keys it reads: it runs whenever those are valid
CROSS_CHECKS: list[tuple[frozenset[str], CrossCheck]] = []


def _cross_check(*reads: str) -> Callable[[CrossCheck], CrossCheck]:
    def register(check: CrossCheck) -> CrossCheck:
        CROSS_CHECKS.append((frozenset(reads), check))
        return check
    return register


def cross_field_problems(config: Config, invalid: frozenset[str] = frozenset()) -> list[Problem]:
    """The problems of every check that reads none of the ``invalid`` top-level keys."""
    return [problem for reads, check in CROSS_CHECKS if not reads & invalid for problem in check(config)]


def _not_an_environment(config: Config, env: str) -> str:
    return f"{env!r} is not one of the environments {config.environments}"


@_cross_check("environments")
def _environments_are_distinct(config: Config) -> list[Problem]:
    envs = config.environments
    problems: list[Problem] = []
    if len(set(envs)) != len(envs):
        problems.append((("environments",), f"listed twice in {envs}"))
    if "unknown" in envs:
        problems.append((("environments",), "'unknown' is reserved for targets with no signal"))
    return problems


@_cross_check("environments", "synonyms")
def _synonyms_name_one_environment(config: Config) -> list[Problem]:
    envs = config.environments
    problems: list[Problem] = []
    claimed: dict[str, str] = {e.lower(): e for e in envs}  # an environment's own name is its synonym
    for env, words in config.synonyms.items():
        if env not in envs:
            problems.append((("synonyms", env), f"not one of the environments {envs}"))
        for word in words:
            other = claimed.setdefault(word.lower(), env)
            if other != env:
                what = "the name of environment" if word.lower() == other.lower() else "also a synonym of"
                problems.append((("synonyms", env), f"{word!r} is {what} {other!r}"))
    return problems


def _keys_are_environments(section: str) -> CrossCheck:
    def check(config: Config) -> list[Problem]:
        mapping: Mapping[str, Any] = getattr(config, section)
        return [((section, env), f"not one of the environments {config.environments}")
                for env in mapping if env not in config.environments]
    return check


for _section in ("name_tokens", "policy", "approvers"):
    _cross_check("environments", _section)(_keys_are_environments(_section))


@_cross_check("environments", "policy")
def _every_environment_has_a_policy_row(config: Config) -> list[Problem]:
    return [(("policy",), f"no entry for environment {env!r}") for env in config.environments
            if env not in config.policy]


@_cross_check("environments", "grants")
def _grants_name_environments(config: Config) -> list[Problem]:
    return [(("grants", who, env), f"not one of the environments {config.environments}")
            for who, grant in config.grants.items() for env in grant if env not in config.environments]


@_cross_check("environments", "webhooks")
def _webhooks_name_environments(config: Config) -> list[Problem]:
    return [(("webhooks", i, "environments"), _not_an_environment(config, env))
            for i, hook in enumerate(config.webhooks) for env in hook.environments or ()
            if env not in config.environments]


@_cross_check("sources")
def _source_names_are_unique(config: Config) -> list[Problem]:
    names = [s.name for s in config.sources]
    return [(("sources",), f"name {n!r} used twice") for n in sorted({n for n in names if names.count(n) > 1})]


@_cross_check("environments", "sources")
def _sources_declare_environments(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    for i, src in enumerate(config.sources):
        declared: dict[Loc, str] = {}
        if isinstance(src, AwsSource):
            declared = {("ou_environments", k): v for k, v in src.ou_environments.items()}
            declared |= {("account_environments", k): v for k, v in src.account_environments.items()}
        elif isinstance(src, KubernetesSource) and src.environment:
            declared = {("environment",): src.environment}
        problems += [(("sources", i, *loc), _not_an_environment(config, env))
                     for loc, env in declared.items() if env not in config.environments]
    return problems


@_cross_check("environments", "export")
def _export_names_environments(config: Config) -> list[Problem]:
    """Only when the export is used (a directory) or its environments were written: the default names production."""
    export = config.export
    if export.directory is None and "environments" not in export.model_fields_set:
        return []
    unknown = [env for env in export.environments if env not in config.environments]
    return [(("export", "environments"), f"{', '.join(unknown)} is not one of the configured environments "
             f"({', '.join(config.environments)}); fix export.environments")] if unknown else []


@_cross_check("store", "leader_election")
def _advisory_lock_needs_postgresql(config: Config) -> list[Problem]:
    """``serve`` refuses it at start (service.daemon.leader); said here, ``validate`` refuses it too."""
    if config.leader_election.kind == "advisory_lock" and not config.store.startswith(("postgresql://",
                                                                                        "postgres://")):
        return [(("leader_election", "kind"), "advisory_lock needs a postgresql:// store; use lease, or none for "
                 "a single replica")]
    return []


@_cross_check("policy")
def _policy_rows_are_whole(config: Config) -> list[Problem]:
    """A class a row leaves out would be denied without anyone having decided so: name it."""
    return [(("policy", env), f"no decision for {', '.join(missing)} (every class needs allow, require_approval "
             "or deny)") for env, row in config.policy.items() if (missing := [c for c in ACTION_CLASSES
                                                                                 if c not in row])]


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("ENVLABEL_CONFIG"):
        return Path(environ["ENVLABEL_CONFIG"])
    default = Path("envlabel.yaml")
    return default if default.exists() else None


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration, raising :class:`ConfigError` with every problem.

    A problem in what an ``ENVLABEL_*`` variable set is named by the variable, not the file."""
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
    overrides, variables = env_settings(environ, frozenset(Config.model_fields))
    return config_from_dict(merge(data, overrides), str(resolved) if resolved else None, variables=variables)


def config_from_dict(data: dict[str, Any], path: str | None = None, *,
                     variables: Mapping[tuple[str, ...], EnvSetting] | None = None) -> Config:
    """``data`` validated; else ConfigError with every problem, the field checks' and the cross-field checks'
    together. ``variables``: which ``ENVLABEL_*`` variable set what (see :func:`env_settings`)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, data)
    variables = variables or {}
    named = [_attributed(loc, message, variables) for loc, message in problems]
    in_the_file = any(not field.startswith(ENV_PREFIX) for field, _ in named)
    raise ConfigError(named, path if in_the_file else None) from None


def _problems(exc: ValidationError, data: Mapping[str, Any]) -> list[Problem]:
    """Each error in plain words; then the cross-field checks whose fields are valid, which pydantic skips
    when any field is not."""
    problems: list[Problem] = []
    for error in exc.errors():
        if error["type"] == _CROSS_FIELD:
            problems += error["ctx"]["problems"]
            continue
        problems.append(_plain(error))
    invalid = frozenset(str(error["loc"][0]) for error in exc.errors() if error["loc"])
    if invalid:
        problems += _cross_field_problems_of_the_rest(data, invalid)
    return problems


def _cross_field_problems_of_the_rest(data: Mapping[str, Any], invalid: frozenset[str]) -> list[Problem]:
    valid = {key: value for key, value in data.items() if key not in invalid}
    try:
        partial = Config.model_validate(valid, context={_ONLY_FIELDS: True})
    except ValidationError:  # cannot happen (each field was valid alone); the field problems stand
        return []
    return cross_field_problems(partial, invalid)


#: the source types, as a ``type:`` key spells them
SOURCE_TYPES: tuple[str, ...] = tuple(get_args(model.model_fields["type"].annotation)[0]
                                      for model in (AwsSource, KubernetesSource, GcpSource))
_SOURCE_MODELS: dict[str, type[BaseModel]] = {"aws": AwsSource, "kubernetes": KubernetesSource, "gcp": GcpSource}
#: what a pattern asks for, in words (the patterns themselves are the schema's)
_PATTERNS: dict[str, str] = {
    r"^\d{12}$": "not an AWS account id: write its 12 digits, quoted ('123456789012')",
    r"^[a-z0-9][a-z0-9-]{0,62}$": "not a source name: lowercase letters, digits and '-', at most 63, starting with "
                                  "a letter or digit",
    r"^https?://": "not a URL: write it with https:// (or http://)",
    r"^(sqlite|postgresql|postgres)://": "not a store URL: write sqlite:///PATH or postgresql://USER@HOST/DB",
    r"^(organizations/)?\d+$": "not a GCP organization: write organizations/NUMBER (or the number, quoted)",
}
#: pydantic's "wrong type" errors: each becomes "expected <what the schema says>, got <what was written>"
_TYPE_ERRORS = frozenset({
    "list_type", "dict_type", "model_type", "model_attributes_type", "string_type", "int_type", "int_parsing",
    "int_from_float", "bool_type", "bool_parsing", "float_type", "float_parsing", "set_type", "tuple_type"})


def _plain(error: ErrorDetails) -> Problem:
    """One pydantic error as (where, what to do); the discriminator tag pydantic adds to a source's path is
    dropped (``sources.0.aws.regions`` -> ``sources.0.regions``)."""
    raw: Loc = tuple(error["loc"])
    loc: Loc = tuple(p for i, p in enumerate(raw) if not (i > 0 and isinstance(raw[i - 1], int)
                                                          and p in _SOURCE_MODELS))
    kind, given = error["type"], error.get("input")
    key = bool(loc) and loc[-1] == "[key]"
    if key:  # a mapping's key is wrong, not its value
        loc = loc[:-1]
    if kind == "extra_forbidden":
        return loc, "unknown key; remove it or check its spelling"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _source_type_problem(loc, error)
    if key and _expects_an_account_id(loc) and isinstance(given, int) and not isinstance(given, bool):
        return _unquoted_account_id(loc, given)
    message = _message(error, raw, given)
    return loc, f"this key is invalid: {message}" if key else message


def _message(error: ErrorDetails, raw: Loc, given: Any) -> str:
    kind = error["type"]
    if kind in _TYPE_ERRORS:
        expected = _expected(raw) or _EXPECTED_BY_ERROR.get(kind, "another kind of value")
        return f"expected {expected}, got {_described(given)}{_hint(kind, given)}"
    if kind == "literal_error":
        return f"expected {error.get('ctx', {}).get('expected', 'another value')}, got {_described(given)}"
    if kind == "missing":
        wanted = _expected(raw)
        return f"missing: this key is required ({wanted})" if wanted else "missing: this key is required"
    if kind == "string_pattern_mismatch":
        words = _PATTERNS.get(str(error.get("ctx", {}).get("pattern")))
        if words:
            return f"{given!r} is {words}"
    return error["msg"].removeprefix("Value error, ")


_EXPECTED_BY_ERROR = {"list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
                      "model_attributes_type": "a mapping", "string_type": "a string", "int_type": "a whole number",
                      "int_parsing": "a whole number", "int_from_float": "a whole number",
                      "bool_type": "true or false", "bool_parsing": "true or false", "float_type": "a number",
                      "float_parsing": "a number"}


def _hint(kind: str, given: Any) -> str:
    """How to write what was meant, where YAML read it as something else."""
    if kind == "string_type" and isinstance(given, bool):
        return "; YAML reads yes, no, on, off, true and false unquoted as true/false: quote it ('on')"
    if kind == "string_type" and isinstance(given, int | float):
        return f"; YAML reads unquoted digits as a number: quote it ('{given}')"
    if kind == "list_type" and isinstance(given, str):
        return f"; write a list: [{given}], or one item per line under the key, each after '- '"
    if kind == "list_type" and isinstance(given, dict):
        return "; write one item per line, each after '- ', or [a, b]"
    return ""


def _described(value: Any) -> str:
    """What the user wrote, in the words of YAML rather than Python."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "nothing (an empty value)"}[value]
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value if len(value) <= 60 else value[:57] + '...'!r}"
    if isinstance(value, dict | list):
        kind = "mapping" if isinstance(value, dict) else "list"
        return f"a {kind}" if value else f"an empty {kind} ({'{}' if kind == 'mapping' else '[]'})"
    return type(value).__name__


def _expected(raw: Loc) -> str | None:
    """What the schema expects at ``raw`` (pydantic's own path, discriminator tags included), in words."""
    annotation: Any = Config
    for part in raw:
        annotation = _unwrapped(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if _is_union(annotation) and part in _SOURCE_MODELS:
            annotation = _SOURCE_MODELS[str(part)]
        elif origin is list and isinstance(part, int):
            annotation = args[0]
        elif origin is dict:
            annotation = args[0] if part == "[key]" else args[1]
        else:
            return None
    return _noun(annotation)


def _unwrapped(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> X."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif _is_union(annotation) and type(None) in get_args(annotation):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


#: the scalar types of the schema, in words: (one, several)
_SCALAR_NOUNS: dict[Any, tuple[str, str]] = {
    str: ("a string", "strings"), int: ("a whole number", "whole numbers"),
    bool: ("true or false", "true/false values"), float: ("a number", "numbers"),
    timedelta: ("a duration such as 30s, 15m, 2h or 7d", "durations such as 15m")}


def _noun(annotation: Any, plural: bool = False) -> str:
    """``list[str]`` -> "a list of strings"; a model -> "a mapping of keys such as interval, jitter"."""
    annotation = _unwrapped(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        choices = " or ".join(", ".join(repr(a) for a in args).rsplit(", ", 1))
        return f"names, each {choices}" if plural else choices
    if origin in (list, dict):
        inner = (f"list of {_noun(args[0], True)}" if origin is list
                 else f"mapping of {_noun(args[0], True)} to {_noun(args[1], True)}")
        return inner.replace(" of", "s of", 1) if plural else f"a {inner}"
    if _is_union(annotation):
        types_ = ", ".join(SOURCE_TYPES)
        return f"sources (mappings with a type: {types_})" if plural else f"a source (a mapping with a type: {types_})"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mappings" if plural else f"a mapping of keys such as {', '.join(list(annotation.model_fields)[:3])}"
    one, many = _SCALAR_NOUNS.get(annotation, ("a value", "values"))
    return many if plural else one


def _expects_an_account_id(loc: Loc) -> bool:
    return len(loc) >= 3 and loc[0] == "sources" and loc[-2] == "account_environments"


def _unquoted_account_id(loc: Loc, number: int) -> Problem:
    """An account id YAML read as a number: quote it; one with a leading zero YAML read as octal lost digits."""
    digits = str(number)
    if len(digits) == 12:
        return loc, f"YAML read this account id as a number; quote it: '{digits}' (an account id is text)"
    octal = format(number, "o") if number >= 0 else ""
    if octal and len(octal) <= 11:  # 0NNN... with digits 0-7 is an octal number to YAML 1.1
        return loc, (f"YAML read this key as the number {digits}, not a 12-digit account id: written "
                     f"{octal.zfill(12)} (a leading 0, then digits 0-7), YAML 1.1 reads it as an octal number and "
                     f"loses digits; quote it: '{octal.zfill(12)}'")
    return loc, (f"this key is invalid: YAML read {digits} as a number, and an AWS account id is 12 digits; "
                 "write it quoted ('123456789012')")


def _source_type_problem(loc: Loc, error: ErrorDetails) -> Problem:
    """pydantic's discriminated-union errors, at the ``type`` key itself, with the types there are."""
    choices = ", ".join(SOURCE_TYPES)
    given = error.get("input")
    if error["type"] == "union_tag_not_found":
        if not isinstance(given, dict):
            return loc, f"expected a source (a mapping with a type: {choices}), got {_described(given)}"
        return (*loc, "type"), f"missing: every source needs a type, one of {choices}"
    tag = error.get("ctx", {}).get("tag")
    return (*loc, "type"), f"{tag!r} is not a source type; use one of {choices}"


def _attributed(loc: Loc, message: str, variables: Mapping[tuple[str, ...], EnvSetting]) -> tuple[str, str]:
    """``(field path, message)``; a problem in what a variable set is named by the variable, with the path."""
    dotted = ".".join(map(str, loc)) if loc else "(config)"
    parts = tuple(str(p) for p in loc)
    for setting_path, (variable, value) in variables.items():
        if parts[:len(setting_path)] == setting_path and _holds(value, loc[len(setting_path):],
                                                                 message.startswith("missing")):
            return variable, f"{dotted}: {message}"
    below = [f"{variable} sets {'.'.join(setting_path)}" for setting_path, (variable, _) in variables.items()
             if setting_path[:len(parts)] == parts]
    return dotted, f"{message} ({'; '.join(below)})" if below else message


def _holds(value: Any, rest: Loc, missing: bool) -> bool:
    """Whether ``value`` (a variable's) holds the place ``rest`` below it (or, ``missing``, lacks its last key)."""
    for i, part in enumerate(rest):
        if isinstance(value, dict):
            match = [v for k, v in value.items() if str(k) == str(part)]
            if not match:
                return missing and i == len(rest) - 1
            value = match[0]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return False
    return True
