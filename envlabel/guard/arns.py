"""Which targets an AWS API call acts on, derived from its parameters (pure; no boto3).

    >>> [t.id for t in targets_of("rds", "DeleteDBInstance", {"DBInstanceIdentifier": "orders-db"},
    ...                           region="us-east-1", account="222222222222")]
    ['arn:aws:rds:us-east-1:222222222222:db:orders-db']
    >>> targets_of("s3", "CreateBucket", {"Bucket": "new"}, region="us-east-1", account="222222222222")
    [Target(id='222222222222', contents=False, fallback=None)]

``service`` is always the botocore service NAME (``client.meta.service_model.service_name``:
``sso-admin``), never the signing name (``sso`` for both IAM Identity Center's admin API and its portal).

Rules:

1. The account a bare name lives in is the caller's, unless the call names another one at its top level
   (``AccountId``, ``AwsAccountId``, ``registryId``, ``CatalogId``...): then that account.
2. A parameter that names a resource (the hand-written :data:`IDENTIFIERS`, else the table generated from
   botocore's input shapes and AWS's ARN formats, ``envlabel/data/aws-targets.json.gz``) becomes that
   resource's ARN. A resource named by several parameters (an ECS service by ``cluster`` and ``service``:
   ``arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/SERVICE``) is named only when all of them are given as plain
   names; one given as an ARN or a path leaves the resource to the ARN walk (its own ARN) or the account's
   contents (a container's ARN). ``Create*`` operations name something that does not exist yet: the
   parameter naming the new thing (``CreateDBInstance``'s ``DBInstanceIdentifier``, ``CreateFunction``'s
   ``FunctionName``), and every several-parameter naming it is part of, is skipped, while the existing
   things it is made in or on stay targets (``CreateRouteTable``'s ``VpcId``, ``CreateFunctionUrlConfig``'s
   ``FunctionName``, ``ecs:CreateService``'s ``cluster``).
3. Every value anywhere in the input, nested structures and lists included, that names an AWS resource is
   a target in its own account: an ARN, an SQS queue URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``
   or an emulator's ``http://HOST:PORT/ACCOUNT/NAME``), an account-id field, and sso-admin's ``TargetId``
   of type ``AWS_ACCOUNT``. AWS-owned ARNs (account ``aws``, managed policies) are not the caller's to
   change and are skipped.
4. A resource of a kind the scanner does not list completely may be one it never saw (the tagging API
   returns only tagged resources): such a target carries a ``fallback``, its account (the call's, for an
   ARN without one, such as an AMI's), decided as the strictest label found inside it when envlabel never
   saw the resource itself.
5. A ``Create*`` that names no existing container is checked against the account (what it is created in
   inherits the account's label). Any other mutating call that names nothing is checked against the
   account with ``contents``: decided as the strictest label found in that account, since it may act on
   any of them. Several targets: the strictest decision wins.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import product
from typing import Any

from envlabel.actions import READ, classify_operation
from envlabel.errors import EnvlabelError, TargetError
from envlabel.targets import parse_target

#: botocore service names whose every call is about credentials, never a resource (the guard must not block
#: AssumeRole or GetCallerIdentity). sso-admin (IAM Identity Center administration) is NOT one of them.
EXEMPT_SERVICES = frozenset({"sts", "sso", "sso-oidc"})

#: kinds the scanner lists completely: never seen means absent (decided as production), no fallback
LISTED_KINDS = frozenset({"ec2:instance", "ec2:vpc", "ec2:subnet", "ec2:security-group", "rds:db", "rds:cluster",
                          "s3:bucket", "eks:cluster", "lambda:function", "dynamodb:table"})

#: parameters naming an account, wherever they appear in the input
ACCOUNT_FIELDS = frozenset({"accountid", "awsaccountid", "registryid", "catalogid", "sourceaccount",
                            "destinationaccount", "targetaccountid", "owneraccountid"})

# Create* operations whose identifier parameters name an *existing* resource even though the noun matches
# (CreateTags tags what exists; a multipart upload or session goes into an existing bucket).
_CREATE_FROM_EXISTING = {("ec2", "CreateTags"), ("s3", "CreateMultipartUpload"), ("s3", "CreateSession")}
# ...and parameters that name the new thing although their noun is not the operation's
_CREATE_NEW_PARAMS = {("rds", "CreateDBInstanceReadReplica", "DBInstanceIdentifier"),
                      ("rds", "CreateDBClusterEndpoint", "DBClusterEndpointIdentifier")}
_ACCOUNT = re.compile(r"^\d{12}$")
_QUEUE_URL = re.compile(r"^https?://(?P<host>[^/]+)/(?P<account>\d{12})/(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)/?$")
_SQS_HOST_REGION = re.compile(r"^(?:sqs\.)?(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.(?:queue\.)?amazonaws")
_NOUN_SUFFIXES = ("identifiers", "identifier", "names", "name", "arns", "arn", "ids", "id")
_PLACEHOLDER = re.compile(r"\{(partition|region|account|\d+)\}")
DATA = "data/aws-targets.json.gz"
#: the table format this module reads (scripts/aws_targets.py's VERSION)
TABLE_VERSION = 2

#: (value, partition, region, account) -> target, or None when the value names a kind we cannot place
Builder = Callable[[str, str, str, str], str | None]
#: the same for the values of several parameters that together name one resource
Build = Callable[[tuple[str, ...], str, str, str], str | None]
#: (the parameters naming one resource, in the order of their template's ``{0}``, ``{1}``...; its builder; its
#: kind, the ARN's resource type: ``rule`` of ``rule/{0}/{1}``, "" for a hand-written naming)
Naming = tuple[tuple[str, ...], Build, str]


@dataclass(frozen=True, slots=True)
class Target:
    """One thing a call acts on. ``contents``: decide as the strictest label inside ``id`` (an account);
    ``fallback``: the account to decide by that way if envlabel never saw ``id``."""

    id: str
    contents: bool = False
    fallback: str | None = None


def _regional(service: str, prefix: str) -> Builder:
    def build(value: str, partition: str, region: str, account: str) -> str:
        return f"arn:{partition}:{service}:{region}:{account}:{prefix}{value}"
    return build


def _ec2_by_prefix(value: str, partition: str, region: str, account: str) -> str | None:
    # CreateTags/DeleteTags take ids of any EC2 kind; the prefix says which
    for prefix, resource in _EC2_ID_PREFIXES.items():
        if value.startswith(prefix):
            return f"arn:{partition}:ec2:{region}:{account}:{resource}/{value}"
    return None


_EC2_ID_PREFIXES = {"i-": "instance", "vpc-": "vpc", "subnet-": "subnet", "sg-": "security-group",
                    "rtb-": "route-table", "acl-": "network-acl", "igw-": "internet-gateway",
                    "eni-": "network-interface", "vol-": "volume", "nat-": "natgateway"}


def _bucket(value: str, partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:s3:::{value}"  # bucket names are global; their ARNs carry no region or account


def _function(value: str, partition: str, region: str, account: str) -> str:
    # FunctionName is a name, a partial ARN (ACCOUNT:function:NAME) or a full ARN, each maybe with :QUALIFIER
    parts = value.split(":")
    if value.startswith("arn:"):
        return ":".join(parts[:7])
    if len(parts) >= 3 and parts[1] == "function":
        account, parts = parts[0], parts[2:]
    return f"arn:{partition}:lambda:{region}:{account}:function:{parts[0]}"


#: botocore service name -> parameter -> ARN builder; better than the generated table where both name one
IDENTIFIERS: dict[str, dict[str, Builder]] = {
    "ec2": {"InstanceIds": _regional("ec2", "instance/"), "InstanceId": _regional("ec2", "instance/"),
            "VpcId": _regional("ec2", "vpc/"), "SubnetId": _regional("ec2", "subnet/"),
            "GroupId": _regional("ec2", "security-group/"), "Resources": _ec2_by_prefix},
    "rds": {"DBInstanceIdentifier": _regional("rds", "db:"), "DBClusterIdentifier": _regional("rds", "cluster:")},
    "s3": {"Bucket": _bucket},
    "eks": {"name": _regional("eks", "cluster/"), "clusterName": _regional("eks", "cluster/")},
    "lambda": {"FunctionName": _function},
    "dynamodb": {"TableName": _regional("dynamodb", "table/")},
}


@cache
def table() -> dict[str, Any]:
    """The generated table of scripts/aws_targets.py (service -> templates and operation -> parameters)."""
    raw = resources.files("envlabel").joinpath(DATA).read_bytes()
    data = json.loads(gzip.decompress(raw))
    if data.get("version") != TABLE_VERSION:
        # an old table would be misread (its entries name one parameter, not a list): refuse, never guess
        raise EnvlabelError(f"envlabel/{DATA} is version {data.get('version')}, this envlabel reads version "
                           f"{TABLE_VERSION}: reinstall envlabel or run scripts/aws_targets.py")
    services: dict[str, Any] = data["services"]
    return services


def partition_of(region: str) -> str:
    """The ARN partition of a region: ``aws-cn`` for China, ``aws-us-gov`` for GovCloud, else ``aws``."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def action_name(service: str, operation: str) -> str:
    """The action envlabel classifies: ``rds:DeleteDBInstance``, ``sso-admin:CreatePermissionSet``."""
    return f"{service}:{operation}"


def is_checked(service: str, operation: str) -> bool:
    """False for calls that cannot change anything (reads, by :mod:`envlabel.actions`, the vocabulary the check
    uses too) or only obtain credentials (by botocore service name)."""
    return service not in EXEMPT_SERVICES and classify_operation(service, operation).action_class != READ


def names_new_thing(operation: str, param: str) -> bool:
    """True when ``param`` of a ``Create*`` operation names what it creates: its noun is the operation's
    (``CreateDBSnapshot``'s ``DBSnapshotIdentifier``), not an existing thing's (its ``DBInstanceIdentifier``)."""
    if not operation.startswith("Create"):
        return False
    noun = operation.removeprefix("Create").lower()
    name = param.lower()
    for suffix in _NOUN_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    # a bare name/id (eks CreateCluster's ``name``) is the new thing's; ``GroupName`` of a SecurityGroup too
    return name in ("", "name", "id") or noun.endswith((name, name + "s"))


@cache
def builders_of(service: str, operation: str) -> tuple[Naming, ...]:
    """The namings of one operation's resources: hand-written first (a generated naming using a parameter they
    cover is dropped), then generated, most parameters first; a ``Create*`` drops those naming the new thing."""
    pairs: list[Naming] = [((p, ), _single(b), "") for p, b in IDENTIFIERS.get(service, {}).items()]
    known = {p for (p, ), _, _ in pairs}
    generated = table().get(service)
    if generated:
        templates = generated["templates"]
        entries: list[tuple[tuple[str, ...], str]] = []
        singles: set[str] = set()
        for params, index in generated["operations"].get(operation, ()):
            # "=": the parameter holds an ARN, which the walk of every value places. A parameter several
            # one-parameter formats match names the first of them only
            if known & set(params) or templates[index] == "=" or (len(params) == 1 and params[0] in singles):
                continue
            singles.update(params if len(params) == 1 else ())
            entries.append((tuple(params), templates[index]))
        pairs += [(ps, _templated(t), _kind_of(t)) for ps, t in sorted(entries, key=lambda e: -len(e[0]))]
    if operation.startswith("Create") and (service, operation) not in _CREATE_FROM_EXISTING:
        pairs = [(ps, b, k) for ps, b, k in pairs
                 if not any(names_new_thing(operation, p) or (service, operation, p) in _CREATE_NEW_PARAMS
                            for p in ps)]
    return tuple(pairs)


def _kind_of(template: str) -> str:
    return re.split(r"[/:{]", template.split(":", 5)[-1], maxsplit=1)[0]


def _single(build: Builder) -> Build:
    def build_one(values: tuple[str, ...], partition: str, region: str, account: str) -> str | None:
        return build(values[0], partition, region, account)
    return build_one


def _templated(template: str) -> Build:
    def build(values: tuple[str, ...], partition: str, region: str, account: str) -> str:
        fields = {"partition": partition, "region": region, "account": account} | {
            str(i): v for i, v in enumerate(values)}
        # one pass: a value holding "{account}" stays text, never a placeholder
        return _PLACEHOLDER.sub(lambda m: fields[m[1]], template)
    return build


def _values_of(params: Mapping[str, Any], names: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Every combination of the values of ``names`` (a list parameter gives one per item); none if one is
    missing: a resource named by several parameters is named only when all are given."""
    values = [params.get(name) for name in names]
    if any(v is None for v in values):
        return
    lists = [[str(i) for i in v] if isinstance(v, list | tuple) else [str(v)] for v in values]
    yield from product(*lists)


def targets_of(service: str, operation: str, params: Mapping[str, Any], region: str, account: str) -> list[Target]:
    """The distinct targets of one call, in parameter order; the account when nothing more precise is named."""
    partition = partition_of(region)
    home = next((str(v) for k, v in params.items() if k.lower() in ACCOUNT_FIELDS and _ACCOUNT.match(str(v))),
                account)
    found: list[Target] = []
    # (kind, parameter) a naming has used: a less specific naming of the same kind from them would be wrong
    # (rule/BUS/NAME built from EventBusName and Rule: not also rule/NAME, the default bus's rule)
    named: set[tuple[str, str]] = set()
    for names, build, kind in builders_of(service, operation):
        if kind and named.issuperset((kind, n) for n in names):
            continue
        for values in _values_of(params, names):
            named.update((kind, n) for n in names)
            if values[-1].startswith("arn:") and service != "lambda":
                continue  # an ARN is placed by the walk below (Lambda's builder drops a qualifier first)
            if len(values) > 1 and any(":" in v or "/" in v for v in values):
                # a container given as an ARN or a path: splicing it into the resource's ARN could name
                # another resource, so whatever it is, it is in the account
                found.append(Target(home, contents=True))
                continue
            built = build(values, partition, region, home)
            # None: a kind it cannot place (an AMI in CreateTags): whatever it is, it is in the account
            found.append(_resource(built, home) if built is not None else Target(home, contents=True))
    named_by_parameters = any(not _ACCOUNT.match(t.id) or t.contents for t in found)
    accounts: list[Target] = []
    for target in _walk(service, params, region, home):
        (accounts if _ACCOUNT.match(target.id) else found).append(target)
    creates = operation.startswith(("Create", "Run"))
    if creates and not named_by_parameters:
        # what a Create* makes sits in the account and inherits its label; ARNs elsewhere in the input (a role
        # passed to CreateCluster) are checked too but never stand in for it: a sandbox role must not let a
        # create through in a production account
        found.append(Target(home))
    elif not any(not _ACCOUNT.match(t.id) or t.contents for t in found):
        # names no resource: it may act on whatever the account holds
        found.append(Target(home, contents=True))
    return list(dict.fromkeys(found + accounts))


def _resource(arn: str, account: str) -> Target:
    """``arn`` as a target: a kind the scanner may not know falls back to its account's strictest label."""
    try:
        parse_target(arn)
    except TargetError:
        return Target(account, contents=True)  # nothing we can name: everything it could be in
    fields = arn.split(":", 5)
    kind = f"{fields[2]}:{re.split(r'[/:]', fields[5], maxsplit=1)[0]}" if len(fields) == 6 else ""
    if fields[2] == "s3" and "/" not in fields[5]:
        kind = "s3:bucket"
    # an ARN without an account (an AMI, an IAM Identity Center instance) lives, for all we know, where the call runs
    owner = fields[4] if len(fields) == 6 and _ACCOUNT.match(fields[4]) else account
    return Target(arn, fallback=None if kind in LISTED_KINDS else owner)


def _walk(service: str, params: Mapping[str, Any], region: str, home: str) -> Iterator[Target]:
    """Every value in the input, at any depth, that names an AWS resource or account."""
    for key, value in _leaves(params):
        if not isinstance(value, str):
            continue
        name = key.lower()
        if name in ACCOUNT_FIELDS and _ACCOUNT.match(value):
            yield Target(value)
        elif value.startswith("arn:"):
            if value.split(":")[4:5] == ["aws"]:
                continue  # AWS-owned (a managed policy): nothing the caller can change
            yield _resource(_function(value, "", "", "") if value.split(":")[2:3] == ["lambda"] else value, home)
        elif (queue := queue_arn(value, region)) is not None:
            yield _resource(queue, home)
    if service == "sso-admin" and str(params.get("TargetType")) == "AWS_ACCOUNT":
        target = str(params.get("TargetId"))
        if _ACCOUNT.match(target):
            yield Target(target)


def _leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, str(k))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item, key)
    else:
        yield key, value


def queue_arn(value: str, region: str) -> str | None:
    """The ARN of an SQS queue URL (AWS's or an emulator's ``http://HOST:PORT/ACCOUNT/NAME``), else None."""
    match = _QUEUE_URL.match(value)
    if match is None:
        return None
    host = match["host"].split(":")[0]
    at = _SQS_HOST_REGION.match(host)
    queue_region = at["region"] if at else region
    return f"arn:{partition_of(queue_region)}:sqs:{queue_region}:{match['account']}:{match['name']}"
