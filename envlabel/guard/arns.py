"""Which targets an AWS API call acts on, derived from its parameters (pure; no boto3).

    >>> targets_of("rds", "DeleteDBInstance", {"DBInstanceIdentifier": "orders-db"},
    ...            region="us-east-1", account="222222222222")
    ['arn:aws:rds:us-east-1:222222222222:db:orders-db']
    >>> targets_of("ec2", "RunInstances", {"ImageId": "ami-1"}, region="us-east-1", account="222222222222")
    ['222222222222']

Rules, most specific first:

1. A parameter that names an existing resource (``DBInstanceIdentifier``,
   ``Bucket``, ``InstanceIds``, ...) becomes that resource's ARN, built with
   the client's region and the caller's account: the production and staging
   twins share names, the account tells them apart. A value that already is
   an ARN is used as it is. Only kinds the scanner lists completely are
   named this way: a resource it may not know would be decided as production
   even in a sandbox account.
2. ``Create*`` operations name something that does not exist yet; the
   container it is created in is the target (the VPC or subnet given, else
   the account), so creating in a sandbox account is not blocked as a
   never-seen (fail-closed: production) target.
3. Any other mutating call whose parameters name nothing we know is checked
   against the account: fail closed, never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from envlabel.actions import is_read

#: services whose every call is about credentials, never a resource (the guard must not block AssumeRole)
EXEMPT_SERVICES = frozenset({"sts", "sso", "sso-oidc", "awsssoportal"})

# Create* operations whose identifier parameters name an *existing* resource they act on
# (CreateDBSnapshot's DBInstanceIdentifier is the instance snapshotted; CreateTags tags what exists).
_CREATE_FROM_EXISTING = {("rds", "CreateDBSnapshot"), ("rds", "CreateDBClusterSnapshot"), ("ec2", "CreateImage"),
                         ("ec2", "CreateSnapshot"), ("ec2", "CreateTags"), ("dynamodb", "CreateBackup"),
                         ("s3", "CreateMultipartUpload"), ("s3", "CreateSession")}
#: parameters of a Create* call that name the container the new resource goes into
CONTAINERS: dict[str, tuple[str, ...]] = {"ec2": ("SubnetId", "VpcId")}

#: (value, partition, region, account) -> target, or None when the value names a kind we cannot place
Builder = Callable[[str, str, str, str], str | None]


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


_EC2_ID_PREFIXES = {"i-": "instance", "vpc-": "vpc", "subnet-": "subnet", "sg-": "security-group"}


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


#: service (signing name) -> parameter -> ARN builder for the value(s) of that parameter
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


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def action_name(service: str, operation: str) -> str:
    """The IAM-style action name envlabel classifies: ``rds:DeleteDBInstance``."""
    return f"{service}:{operation}"


def is_checked(service: str, operation: str) -> bool:
    """False for calls that cannot change anything (reads, by :mod:`envlabel.actions`, the vocabulary the check
    uses too) or only obtain credentials."""
    return service not in EXEMPT_SERVICES and not is_read(action_name(service, operation))


def targets_of(service: str, operation: str, params: Mapping[str, Any], region: str, account: str) -> list[str]:
    """The distinct targets of one call, in parameter order; the account when nothing more precise is named."""
    partition = partition_of(region)
    builders = IDENTIFIERS.get(service, {})
    if operation.startswith("Create") and (service, operation) not in _CREATE_FROM_EXISTING:
        builders = {p: b for p, b in builders.items() if p in CONTAINERS.get(service, ())}
    targets: list[str] = []
    for param, build in builders.items():
        value = params.get(param)
        for item in value if isinstance(value, list | tuple) else [] if value is None else [value]:
            text = str(item)
            # an ARN is already a target (Lambda's may carry a qualifier its builder drops)
            plain = text.startswith("arn:") and service != "lambda"
            targets.append((text if plain else build(text, partition, region, account)) or account)
    return list(dict.fromkeys(targets)) or [account]
