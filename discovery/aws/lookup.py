"""One AWS resource no scan has seen, looked up by its ARN: its own tags and its place, as a scan records it.

The caller's account is read with the source's own credentials, a member account through the role the
scanner assumes (:meth:`AwsScanner.role_arn`). Kinds the scanner places in a VPC, or whose tags the
Resource Groups Tagging API may miss, are read from their service's own describe call by id, so the record
has the parent and the tags a scan would give it; every other kind from ``tag:GetResources`` for the one
ARN, parented on the account. The tagging API never returns a resource that never had a tag, so an empty
answer cannot tell an untagged resource from one that does not exist: it is no answer, nothing is stored,
and the check fails closed (a made-up ARN in a sandbox account never becomes a sandbox record). Every call
here is one the scanner already makes, so the shipped IAM policy covers lookups too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from botocore.config import Config as BotoConfig

from envlabel.config import AwsSource
from envlabel.discovery.aws.calls import Api, Credentials, ScopeFailed, SessionFactory, make_sessions
from envlabel.discovery.aws.records import (
    PROVIDER,
    arn_parts,
    ec2_arn,
    identifier_of_arn,
    kind_of_arn,
    name_of,
    partition_of,
    tag_dict,
)
from envlabel.discovery.aws.scanner import AwsScanner, Caller, global_region
from envlabel.discovery.lookup import LookupFailed
from envlabel.model import Resource

PERMISSIONS = (
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
    "ec2:DescribeInstances",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcs",
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "eks:DescribeCluster",
    "tag:GetResources",
)

#: error codes that mean "no such resource" (the lookup then answers None)
_NOT_FOUND = frozenset({
    "InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound", "InvalidGroupId.Malformed", "InvalidVpcID.NotFound", "DBInstanceNotFound",
    "DBInstanceNotFoundFault", "DBClusterNotFoundFault", "ResourceNotFoundException",
})
#: kinds a scan places in a VPC by a call the lookup cannot make for one function (lambda:GetFunction is not
#: in the shipped policy): without their VPC they would miss its environment, so they are not looked up
_UNPLACEABLE = frozenset({"lambda:function"})

_SESSIONS: dict[str | None, SessionFactory] = {}


def lookup_aws(source: AwsSource, arn: str, timeout: float) -> Resource | None:
    """The record of ``arn`` as a scan would make it, or None when AWS says there is no such resource.

    Raises :class:`LookupFailed` (saying why and what to do) when it cannot be read."""
    _, region, account, _ = arn_parts(arn)
    kind = kind_of_arn(arn)
    if kind in _UNPLACEABLE:
        raise LookupFailed(f"a {kind} is placed in its VPC only by a scan",
                           f"run `envlabel scan --source {source.name}` to label it")
    if region and region not in source.regions:
        raise LookupFailed(f"region {region} is not among the regions of source {source.name} "
                           f"({', '.join(source.regions)})", f"add {region} to the source's regions and scan")
    sessions = _SESSIONS.get(source.profile) or _SESSIONS.setdefault(source.profile, make_sessions(source.profile))
    home = global_region(source.regions)
    api = _api_maker(source, sessions, timeout)
    try:
        identity = api(None, home, "sts", "the source's credentials").call("GetCallerIdentity")
        caller = Caller(identity["Account"], partition_of(identity["Arn"]), identity["Arn"])
        credentials, principal = _access(source, sessions, caller, account, api)
        reader = _Reader(lambda service: api(credentials, region or home, service, principal), arn, account)
        return reader.read(kind, region)
    except ScopeFailed as failure:
        raise LookupFailed(failure.message, failure.hint) from None


def _api_maker(source: AwsSource, sessions: SessionFactory,
               timeout: float) -> Callable[[Credentials | None, str, str, str], Api]:
    """Clients that give up within the lookup's deadline: no retries, short socket timeouts."""
    config = BotoConfig(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=timeout,
                        read_timeout=timeout)

    def make(credentials: Credentials | None, region: str, service: str, principal: str) -> Api:
        client = sessions(credentials).client(  # type: ignore[call-overload]
            service, region_name=region, endpoint_url=source.endpoint_url, config=config)
        return Api(client, principal)

    return make


def _access(source: AwsSource, sessions: SessionFactory, caller: Caller, account: str,
            api: Callable[[Credentials | None, str, str, str], Api]) -> tuple[Credentials | None, str]:
    """Credentials in ``account``: the source's own in its own account, else the role a scan assumes."""
    if account == caller.account:
        return None, caller.principal
    if not source.organization:
        raise LookupFailed(f"source {source.name} reads only its own account {caller.account}, not {account}",
                           "set organization: true on the source to reach member accounts")
    role = AwsScanner(source, sessions).role_arn(caller, account)
    try:
        response = api(None, global_region(source.regions), "sts", caller.principal).call(
            "AssumeRole", RoleArn=role, RoleSessionName="envlabel-lookup")
    except ScopeFailed as failure:
        raise LookupFailed(f"could not assume {role}: {failure.message}",
                           f"create the role {role} trusting {caller.arn}, as scans need") from None
    c = response["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]), f"the role {role}"


class _Reader:
    """Reads one ARN's record with the calls a scan makes for its kind."""

    def __init__(self, api: Callable[[str], Api], arn: str, account: str) -> None:
        self.api = api
        self.arn = arn
        self.account = account
        self.identifier = identifier_of_arn(arn)

    def read(self, kind: str, region: str) -> Resource | None:
        describe = {
            "ec2:instance": self.instance, "ec2:subnet": self.subnet, "ec2:security-group": self.security_group,
            "ec2:vpc": self.vpc, "rds:db": self.database, "rds:cluster": self.db_cluster, "eks:cluster": self.eks,
        }.get(kind, self.tagged)
        try:
            found = describe()
        except ScopeFailed as failure:
            if failure.code in _NOT_FOUND:
                return None
            raise
        if found is None:
            return None
        tags, parent = found
        scope = f"{self.account}/{region or 'global'}"
        return Resource(self.arn, PROVIDER, kind, name_of(tags, self.identifier), parent or self.account, tags,
                        scope, region)

    def vpc_arn(self, vpc_id: str | None) -> str | None:
        """The VPC by this account's ARN (a VPC shared in from another account is then not found in the
        store, and the check fails closed rather than label the resource from the account alone)."""
        if not vpc_id:
            return None
        _, region, _, _ = arn_parts(self.arn)
        return ec2_arn(partition_of(self.arn), region, self.account, "vpc", vpc_id)

    def first(self, service: str, operation: str, key: str, **params: Any) -> Mapping[str, Any] | None:
        items = list(self.api(service).call(operation, **params).get(key) or ())
        return items[0] if items else None

    def instance(self) -> tuple[dict[str, str], str | None] | None:
        reservation = self.first("ec2", "DescribeInstances", "Reservations", InstanceIds=[self.identifier])
        instances = list((reservation or {}).get("Instances") or ())
        if not instances or instances[0].get("State", {}).get("Name") == "terminated":
            return None
        i = instances[0]
        return tag_dict(i.get("Tags")), self.vpc_arn(i.get("VpcId"))

    def subnet(self) -> tuple[dict[str, str], str | None] | None:
        s = self.first("ec2", "DescribeSubnets", "Subnets", SubnetIds=[self.identifier])
        return None if s is None else (tag_dict(s.get("Tags")), self.vpc_arn(s.get("VpcId")))

    def security_group(self) -> tuple[dict[str, str], str | None] | None:
        g = self.first("ec2", "DescribeSecurityGroups", "SecurityGroups", GroupIds=[self.identifier])
        return None if g is None else (tag_dict(g.get("Tags")), self.vpc_arn(g.get("VpcId")))

    def vpc(self) -> tuple[dict[str, str], str | None] | None:
        v = self.first("ec2", "DescribeVpcs", "Vpcs", VpcIds=[self.identifier])
        return None if v is None else (tag_dict(v.get("Tags")), None)

    def database(self) -> tuple[dict[str, str], str | None] | None:
        db = self.first("rds", "DescribeDBInstances", "DBInstances", DBInstanceIdentifier=self.identifier)
        if db is None:
            return None
        return tag_dict(db.get("TagList")), self.vpc_arn((db.get("DBSubnetGroup") or {}).get("VpcId"))

    def db_cluster(self) -> tuple[dict[str, str], str | None] | None:
        c = self.first("rds", "DescribeDBClusters", "DBClusters", DBClusterIdentifier=self.identifier)
        return None if c is None else (tag_dict(c.get("TagList")), None)

    def eks(self) -> tuple[dict[str, str], str | None] | None:
        cluster = self.api("eks").call("DescribeCluster", name=self.identifier).get("cluster")
        return None if not cluster else (tag_dict(cluster.get("tags")), None)

    def tagged(self) -> tuple[dict[str, str], str | None] | None:
        """Any other kind: its tags from the tagging API (nothing back: not known to exist, so no record)."""
        mapping = self.first("resourcegroupstaggingapi", "GetResources", "ResourceTagMappingList",
                             ResourceARNList=[self.arn])
        return None if mapping is None else (tag_dict(mapping.get("Tags")), None)
