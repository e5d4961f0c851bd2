"""Resources of one account: per region, and S3 (global).

Two sources are merged per region. The per-service listings (EC2, RDS, EKS,
Lambda, DynamoDB) are the truth for their kinds: they give topology (VpcId),
untagged resources (which the Resource Groups Tagging API never returns) and
kinds the tagging API misses (EKS in some implementations). The tagging API
adds the tags the listings do not carry (Lambda, DynamoDB) and every other
tagged resource type, parented on the account.

Topology: account -> VPC -> instances, subnets, security groups, RDS
instances (DBSubnetGroup.VpcId) and Lambda functions in a VPC; everything
else hangs off the account. A VPC shared into this account (RAM) belongs to
its owner's scan; resources here still point at it by the owner's ARN.

With ``recovery_facts`` (the default) EBS volumes and KMS keys are listed
too: a volume attached to an instance hangs off that instance (its data is
the instance's: it inherits the instance's environment), a detached one and
every key off the account. Their facts, and every other kind's, come from
discovery/aws/facts.py.

S3 (:func:`scan_buckets`) costs calls that do not grow with the buckets: one
ListBuckets (which gives each bucket's region on AWS) and one tagging-index
read per bucket region; a call per bucket only where those cannot answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from envlabel.discovery.aws import facts
from envlabel.discovery.aws.calls import Api, Clients, ScopeFailed
from envlabel.discovery.aws.records import (
    LISTED_KINDS,
    PROVIDER,
    arn_parts,
    dynamodb_arn,
    ec2_arn,
    identifier_of_arn,
    kind_of_arn,
    name_of,
    s3_arn,
    tag_dict,
)
from envlabel.model import Resource

PERMISSIONS = (
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeInstances",
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "eks:ListClusters",
    "eks:DescribeCluster",
    "lambda:ListFunctions",
    "dynamodb:ListTables",
    "tag:GetResources",
    "s3:ListAllMyBuckets",
    "s3:GetBucketLocation",
    "s3:GetBucketTagging",
)

#: instances that still exist (terminated ones linger in listings for about an hour)
_LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]


@dataclass(frozen=True, slots=True)
class Where:
    """The account and region being scanned, and how to spell ARNs there."""

    partition: str
    account: str
    region: str
    #: read recovery facts (the source's ``recovery_facts``): without, records carry none
    recovery_facts: bool = True

    @property
    def scope(self) -> str:
        return f"{self.account}/{self.region}"

    def record(self, arn: str, kind: str, identifier: str, tags: dict[str, str], parent: str | None = None,
               *, facts: Mapping[str, Any] | None = None) -> Resource:
        return Resource(arn, PROVIDER, kind, name_of(tags, identifier), parent or self.account, tags, self.scope,
                        self.region, facts=dict(facts or {}) if self.recovery_facts else {})


@dataclass(frozen=True, slots=True)
class Network:
    """The VPCs and subnets visible in one account and region (its own and those shared into it)."""

    vpc_owners: Mapping[str, str]
    subnet_vpcs: Mapping[str, str]

    def parent(self, where: Where, vpc_id: str | None, subnet_ids: Iterable[str] = ()) -> str | None:
        """The VPC's ARN (by its owner's account), found by id or through a subnet; None: the account.

        A VPC this account cannot see is never named as a parent: an unseen
        parent would cut the resource off from its account's environment.
        """
        if vpc_id not in self.vpc_owners:
            vpc_id = next((self.subnet_vpcs[s] for s in subnet_ids if s in self.subnet_vpcs), None)
        if vpc_id is None or vpc_id not in self.vpc_owners:
            return None
        return ec2_arn(where.partition, where.region, self.vpc_owners[vpc_id], "vpc", vpc_id)


def scan_region(clients: Clients, where: Where) -> list[Resource]:
    """Every resource of one account and region. Raises ScopeFailed: a region is all or nothing."""
    ec2 = clients.api("ec2")
    vpcs = list(ec2.items("DescribeVpcs", "Vpcs"))
    subnets = list(ec2.items("DescribeSubnets", "Subnets"))
    net = Network({v["VpcId"]: v.get("OwnerId") or where.account for v in vpcs},
                  {s["SubnetId"]: s["VpcId"] for s in subnets if s.get("VpcId")})
    listed = [
        *transform_vpcs(vpcs, where),
        *transform_subnets(subnets, where, net),
        *transform_security_groups(ec2.items("DescribeSecurityGroups", "SecurityGroups"), where, net),
        *transform_instances(
            (i for r in ec2.items("DescribeInstances", "Reservations",
                                  Filters=[{"Name": "instance-state-name", "Values": _LIVE_STATES}])
             for i in r.get("Instances", ())), where, net),
        *get_rds(clients.api("rds"), where, net),
        *get_eks(clients.api("eks"), where),
        *transform_functions(clients.api("lambda").items("ListFunctions", "Functions"), where, net),
        *transform_tables(clients.api("dynamodb").items("ListTables", "TableNames"), where),
    ]
    listed_kinds = LISTED_KINDS
    if where.recovery_facts:
        more, kinds = list_recovery_kinds(clients, where, listed)
        listed, listed_kinds = facts.add_region_facts(clients.api, where.account, [*listed, *more]), kinds
    tagged = get_tagged(clients.api("resourcegroupstaggingapi"))
    return merge_tagged(listed, tagged, where, listed_kinds)


def list_recovery_kinds(clients: Clients, where: Where,
                        listed: list[Resource]) -> tuple[list[Resource], frozenset[str]]:
    """EBS volumes and KMS keys, and the kinds the listing now owns.

    A listing that fails (a policy that predates it) leaves its kind to the tagging API, as before, instead
    of failing the region: these kinds are listed for their facts, and facts are not labels.
    """
    instances = {r.id for r in listed if r.kind == "ec2:instance"}
    found: list[Resource] = []
    kinds = set(LISTED_KINDS)
    for kind in ("ec2:volume", "kms:key"):
        try:
            found += (get_volumes(clients.api("ec2"), where, instances) if kind == "ec2:volume"
                      else get_keys(clients.api("kms"), where))
        except ScopeFailed:
            continue
        kinds.add(kind)
    return found, frozenset(kinds)


def get_volumes(ec2: Api, where: Where, instances: set[str]) -> list[Resource]:
    return transform_volumes(ec2.items("DescribeVolumes", "Volumes"), where, instances)


def transform_volumes(volumes: Iterable[Mapping[str, Any]], where: Where, instances: set[str]) -> list[Resource]:
    """An attached volume's parent is its instance (when this scan lists it: never an unseen parent)."""
    records = []
    for v in volumes:
        attached = next((ec2_arn(where.partition, where.region, where.account, "instance", a["InstanceId"])
                         for a in v.get("Attachments") or () if a.get("InstanceId")
                         and a.get("State") in ("attaching", "attached")), None)
        records.append(where.record(ec2_arn(where.partition, where.region, where.account, "volume", v["VolumeId"]),
                                    "ec2:volume", v["VolumeId"], tag_dict(v.get("Tags")),
                                    attached if attached in instances else None, facts={"attached_to": attached}))
    return records


def get_keys(kms: Api, where: Where) -> list[Resource]:
    """Customer-managed keys (AWS-managed ones cannot be deleted or disabled by anyone). Tags come from the
    tagging API. A key DescribeKey cannot read is kept, its facts unreadable."""
    reader = facts.Reader(kms)
    records = []
    for key in kms.items("ListKeys", "Keys"):
        metadata = reader.call("DescribeKey", KeyId=key["KeyId"])
        if metadata is None:
            records.append(where.record(key["KeyArn"], "kms:key", key["KeyId"], {}, facts=facts.unreadable(
                "state", "pending_deletion_days", "deletion_date")))
        elif metadata.get("KeyMetadata", {}).get("KeyManager") != "AWS":
            records.append(where.record(key["KeyArn"], "kms:key", key["KeyId"], {},
                                        facts=facts.key_facts(metadata["KeyMetadata"])))
    return records


def _own(item: Mapping[str, Any], where: Where) -> bool:
    """Owned here, not shared in from another account (whose own scan reports it)."""
    return (item.get("OwnerId") or where.account) == where.account


def transform_vpcs(vpcs: Iterable[Mapping[str, Any]], where: Where) -> list[Resource]:
    return [where.record(ec2_arn(where.partition, where.region, where.account, "vpc", v["VpcId"]), "ec2:vpc",
                         v["VpcId"], tag_dict(v.get("Tags")))
            for v in vpcs if _own(v, where)]


def transform_subnets(subnets: Iterable[Mapping[str, Any]], where: Where,
                      net: Network) -> list[Resource]:
    return [where.record(ec2_arn(where.partition, where.region, where.account, "subnet", s["SubnetId"]),
                         "ec2:subnet", s["SubnetId"], tag_dict(s.get("Tags")),
                         net.parent(where, s.get("VpcId")))
            for s in subnets if _own(s, where)]


def transform_security_groups(groups: Iterable[Mapping[str, Any]], where: Where,
                              net: Network) -> list[Resource]:
    return [where.record(ec2_arn(where.partition, where.region, where.account, "security-group", g["GroupId"]),
                         "ec2:security-group", g.get("GroupName") or g["GroupId"], tag_dict(g.get("Tags")),
                         net.parent(where, g.get("VpcId")))
            for g in groups if _own(g, where)]


def transform_instances(instances: Iterable[Mapping[str, Any]], where: Where,
                        net: Network) -> list[Resource]:
    return [where.record(ec2_arn(where.partition, where.region, where.account, "instance", i["InstanceId"]),
                         "ec2:instance", i["InstanceId"], tag_dict(i.get("Tags")),
                         net.parent(where, i.get("VpcId"), [i.get("SubnetId") or ""]), facts=facts.instance_facts(i))
            for i in instances]


def get_rds(rds: Api, where: Where, net: Network) -> list[Resource]:
    return [*transform_db_instances(rds.items("DescribeDBInstances", "DBInstances"), where, net),
            *transform_db_clusters(rds.items("DescribeDBClusters", "DBClusters"), where)]


def transform_db_instances(dbs: Iterable[Mapping[str, Any]], where: Where,
                           net: Network) -> list[Resource]:
    records = []
    for db in dbs:
        group = db.get("DBSubnetGroup") or {}
        subnets = [s.get("SubnetIdentifier", "") for s in group.get("Subnets", ())]
        records.append(where.record(db["DBInstanceArn"], "rds:db", db["DBInstanceIdentifier"],
                                    tag_dict(db.get("TagList")), net.parent(where, group.get("VpcId"), subnets),
                                    facts=facts.db_instance_facts(db)))
    return records


def transform_db_clusters(clusters: Iterable[Mapping[str, Any]], where: Where) -> list[Resource]:
    return [where.record(c["DBClusterArn"], "rds:cluster", c["DBClusterIdentifier"], tag_dict(c.get("TagList")),
                         facts=facts.db_cluster_facts(c))
            for c in clusters]


def get_eks(eks: Api, where: Where) -> list[Resource]:
    """ListClusters gives names only; DescribeCluster gives the ARN and tags."""
    clusters: list[Mapping[str, Any]] = []
    for name in eks.items("ListClusters", "clusters"):
        try:
            clusters.append(eks.call("DescribeCluster", name=name)["cluster"])
        except ScopeFailed as failure:
            if failure.code != "ResourceNotFoundException":  # deleted since it was listed
                raise
    return transform_clusters(clusters, where)


def transform_clusters(clusters: Iterable[Mapping[str, Any]], where: Where) -> list[Resource]:
    return [where.record(c["arn"], "eks:cluster", c["name"], tag_dict(c.get("tags")), facts=facts.eks_facts(c))
            for c in clusters]


def transform_functions(functions: Iterable[Mapping[str, Any]], where: Where,
                        net: Network) -> list[Resource]:
    """Tags come from the tagging API (ListFunctions does not carry them)."""
    records = []
    for f in functions:
        vpc = f.get("VpcConfig") or {}
        records.append(where.record(f["FunctionArn"], "lambda:function", f["FunctionName"], {},
                                    net.parent(where, vpc.get("VpcId"), vpc.get("SubnetIds", ()))))
    return records


def transform_tables(names: Iterable[str], where: Where) -> list[Resource]:
    """Tags come from the tagging API (ListTables gives names only)."""
    return [where.record(dynamodb_arn(where.partition, where.region, where.account, n), "dynamodb:table", n, {})
            for n in names]


def get_tagged(tagging: Api, **filters: Any) -> dict[str, dict[str, str]]:
    """ARN -> tags of every resource the tagging index lists (100 to a page: the most it gives)."""
    return {m["ResourceARN"]: tag_dict(m.get("Tags"))
            for m in tagging.items("GetResources", "ResourceTagMappingList", ResourcesPerPage=100, **filters)}


def merge_tagged(listed: list[Resource], tagged: Mapping[str, dict[str, str]], where: Where,
                 listed_kinds: frozenset[str] = LISTED_KINDS) -> list[Resource]:
    """Listed resources with the tagging API's tags added; other tagged resources parented on the account.

    A tagged ARN of a listed kind that the listing did not return is gone (a
    terminated instance) and is dropped; S3 belongs to the global scope, and
    an ARN of another region (a global service answering here) is left to it.
    """
    merged: list[Resource] = []
    for r in listed:
        extra = tagged.get(r.id)
        tags = {**extra, **r.tags} if extra else r.tags  # the service's own answer is fresher than the index
        merged.append(replace(r, tags=tags, name=tags.get("Name") or r.name) if extra else r)
    seen = {r.id for r in listed}
    for arn, tags in tagged.items():
        kind = kind_of_arn(arn)
        _, region, _, _ = arn_parts(arn)
        if arn in seen or kind in listed_kinds or region not in ("", where.region):
            continue
        merged.append(where.record(arn, kind, identifier_of_arn(arn), tags))
    return merged


def scan_buckets(s3: Api, partition: str, account: str, recovery_facts: bool = True,
                 regions: Sequence[str] = ()) -> tuple[list[Resource], list[ScopeFailed]]:
    """S3 buckets of the account (global), in as few calls as the data allows.

    One ListBuckets gives every bucket and, on AWS, its region (``BucketRegion``); the tags come from the
    tagging index: one paginated GetResources filtered to S3 per region that holds two or more buckets (S3's
    index is regional). The index lists only tagged buckets, so a bucket absent from an index that answered has no
    tags: an answer, not a gap. Per-bucket calls are fallbacks only: GetBucketLocation where no listing gave
    the region (:func:`bucket_regions`), GetBucketTagging for the buckets of a region whose index could not be
    read (tag:GetResources denied there, a region not enabled). The index trails a tag change by seconds to
    minutes, as it does for the Lambda and DynamoDB tags of every region.

    A bucket whose region or tags cannot be read is skipped, not emitted tagless; one whose facts cannot be
    read is emitted with them unreadable. ``regions``: the scanned regions, where a ListBuckets without
    ``BucketRegion`` (moto, S3-compatible endpoints) is asked per region before per bucket.
    """
    failures: list[ScopeFailed] = []
    listed = list(s3.items("ListBuckets", "Buckets"))
    regions_of = bucket_regions(s3, listed, regions or [s3.region], failures)
    tags_of = bucket_tags_by_region(s3, partition, regions_of, failures)
    reader = facts.s3_reader(s3)
    buckets = [Resource(s3_arn(partition, name), PROVIDER, "s3:bucket", name_of(tags, name), account, tags,
                        f"{account}/global", regions_of[name],
                        facts=facts.bucket_facts(reader, name) if recovery_facts else {})
               for name, tags in tags_of.items()]
    return buckets, failures


def bucket_regions(s3: Api, listed: Sequence[Mapping[str, Any]], candidates: Sequence[str],
                   failures: list[ScopeFailed]) -> dict[str, str]:
    """Bucket name -> region, in listing order: ``BucketRegion`` where the listing has it; else one ListBuckets
    filtered by region per candidate region (:func:`regions_by_filter`); GetBucketLocation for the rest."""
    names = [b["Name"] for b in listed]
    found = {b["Name"]: b["BucketRegion"] for b in listed if b.get("BucketRegion")}
    missing = {n for n in names if n not in found}
    if len(missing) > len(set(candidates)):  # else a call per bucket is no more calls, and never ambiguous
        found.update(regions_by_filter(s3, missing, candidates))
    regions: dict[str, str] = {}
    for name in names:
        try:
            regions[name] = found.get(name) or bucket_region(s3, name)
        except ScopeFailed as failure:
            note_bucket_failure(failures, name, failure)
    return regions


def regions_by_filter(s3: Api, names: set[str], candidates: Sequence[str]) -> dict[str, str]:
    """The regions of ``names`` from ListBuckets filtered by ``BucketRegion``, one call per candidate region.

    Trusted only when the answers can be told apart from an endpoint that ignores the filter: no bucket in two
    regions' answers, and a single candidate's answer not naming every bucket. Otherwise, or when a filtered
    call fails, nothing is taken from them (the caller asks per bucket: slower, never wrong).
    """
    found: dict[str, str] = {}
    for region in dict.fromkeys(candidates):
        try:
            answer = {b["Name"] for b in s3.items("ListBuckets", "Buckets", BucketRegion=region)} & names
        except ScopeFailed:
            return {}
        if answer & found.keys():
            return {}
        found.update(dict.fromkeys(answer, region))
    if len(set(candidates)) == 1 and found.keys() == names:
        return {}
    return found


def bucket_tags_by_region(s3: Api, partition: str, regions_of: Mapping[str, str],
                          failures: list[ScopeFailed]) -> dict[str, dict[str, str]]:
    """Bucket name -> tags (in ``regions_of``'s order): each region's index once, GetBucketTagging per bucket
    only in a region whose index could not be read, or holding a single bucket (one call either way, and the
    bucket's own answer has no index lag)."""
    per_region = Counter(regions_of.values())
    indexes = {region: s3_tag_index(s3, region) if count > 1 else None for region, count in per_region.items()}
    tags: dict[str, dict[str, str]] = {}
    for name, region in regions_of.items():
        index = indexes[region]
        try:
            tags[name] = bucket_tags(s3, name) if index is None else index.get(s3_arn(partition, name), {})
        except ScopeFailed as failure:
            note_bucket_failure(failures, name, failure)
    return tags


def s3_tag_index(s3: Api, region: str) -> dict[str, dict[str, str]] | None:
    """ARN -> tags of the tagged buckets of ``region``; None when the index cannot answer there."""
    tagging = s3.sibling("resourcegroupstaggingapi", region)
    if tagging is None:
        return None
    try:
        return get_tagged(tagging, ResourceTypeFilters=["s3"])
    except ScopeFailed:
        return None


def note_bucket_failure(failures: list[ScopeFailed], bucket: str, failure: ScopeFailed) -> None:
    """A bucket deleted since it was listed is simply gone; any other failure is the bucket's error."""
    if failure.code != "NoSuchBucket":
        failures.append(ScopeFailed(f"bucket {bucket}: {failure.message}", failure.hint, failure.code))


def bucket_region(s3: Api, bucket: str) -> str:
    constraint = s3.call("GetBucketLocation", Bucket=bucket).get("LocationConstraint")
    # the API's historical spellings: none for us-east-1, "EU" for eu-west-1
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint or "us-east-1")


def bucket_tags(s3: Api, bucket: str) -> dict[str, str]:
    try:
        return tag_dict(s3.call("GetBucketTagging", Bucket=bucket).get("TagSet"))
    except ScopeFailed as failure:
        if failure.code == "NoSuchTagSet":  # a bucket that never had tags
            return {}
        raise
