"""AWS transforms on fixture literals: tags, ARNs, topology, the tagging-API merge, role ARNs, error hints."""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError

from envlabel.config import AwsSource
from envlabel.discovery.aws.calls import Api, ScopeFailed, iam_action
from envlabel.discovery.aws.organization import transform_account, transform_ou
from envlabel.discovery.aws.records import identifier_of_arn, kind_of_arn, tag_dict
from envlabel.discovery.aws.scanner import Access, AwsScanner, Caller, global_region
from envlabel.discovery.aws.services import (
    Network,
    Where,
    merge_tagged,
    transform_functions,
    transform_instances,
    transform_subnets,
    transform_vpcs,
)

WHERE = Where("aws", "222222222222", "us-east-1")
NET = Network({"vpc-1": "222222222222", "vpc-shared": "999999999999"}, {"subnet-1": "vpc-1", "subnet-s": "vpc-shared"})


def test_tags_normalize_to_one_dict() -> None:
    assert tag_dict([{"Key": "Env", "Value": "prd"}, {"Key": "empty"}]) == {"Env": "prd", "empty": ""}
    assert tag_dict({"env": "dev"}) == {"env": "dev"}
    assert tag_dict(None) == {}


def test_kind_and_identifier_from_arns() -> None:
    assert kind_of_arn("arn:aws:ec2:us-east-1:2:volume/vol-1") == "ec2:volume"
    assert kind_of_arn("arn:aws:lambda:us-east-1:2:function:f") == "lambda:function"
    assert kind_of_arn("arn:aws:sns:us-east-1:2:alerts") == "sns:topic"
    assert kind_of_arn("arn:aws:kinesis:us-east-1:2:weird") == "kinesis:resource"
    assert kind_of_arn("arn:aws:elasticloadbalancing:us-east-1:2:loadbalancer/app/web/1") == \
        "elasticloadbalancing:loadbalancer"
    assert identifier_of_arn("arn:aws:lambda:us-east-1:2:function:worker") == "worker"


def test_vpc_topology_and_shared_vpcs() -> None:
    vpcs = transform_vpcs([{"VpcId": "vpc-1", "OwnerId": "222222222222", "Tags": [{"Key": "Name", "Value": "main"}]},
                           {"VpcId": "vpc-shared", "OwnerId": "999999999999"}], WHERE)
    assert [(v.id, v.name, v.parent) for v in vpcs] == [
        ("arn:aws:ec2:us-east-1:222222222222:vpc/vpc-1", "main", "222222222222")]  # the shared one is its owner's
    subnets = transform_subnets([{"SubnetId": "subnet-1", "VpcId": "vpc-1", "OwnerId": "222222222222"},
                                 {"SubnetId": "subnet-s", "VpcId": "vpc-shared", "OwnerId": "999999999999"}],
                                WHERE, NET)
    assert [s.id for s in subnets] == ["arn:aws:ec2:us-east-1:222222222222:subnet/subnet-1"]
    [inside_shared, classic, unseen] = transform_instances([
        {"InstanceId": "i-1", "VpcId": "vpc-shared", "SubnetId": "subnet-s"},
        {"InstanceId": "i-2"},
        {"InstanceId": "i-3", "VpcId": "vpc-gone"}], WHERE, NET)
    assert inside_shared.parent == "arn:aws:ec2:us-east-1:999999999999:vpc/vpc-shared"
    assert classic.parent == "222222222222" and classic.name == "i-2"
    assert unseen.parent == "222222222222"  # never a parent this account cannot see


def test_lambda_vpc_found_through_its_subnets() -> None:
    [fn] = transform_functions([{"FunctionArn": "arn:aws:lambda:us-east-1:222222222222:function:w",
                                 "FunctionName": "w", "VpcConfig": {"VpcId": "", "SubnetIds": ["subnet-1"]}}],
                               WHERE, NET)
    assert fn.parent == "arn:aws:ec2:us-east-1:222222222222:vpc/vpc-1"


def test_merge_adds_tags_drops_gone_and_keeps_other_kinds() -> None:
    listed = transform_functions([{"FunctionArn": "arn:aws:lambda:us-east-1:222222222222:function:w",
                                   "FunctionName": "w"}], WHERE, NET)
    tagged = {
        "arn:aws:lambda:us-east-1:222222222222:function:w": {"env": "prd", "Name": "worker"},
        "arn:aws:ec2:us-east-1:222222222222:instance/i-terminated": {"env": "prd"},
        "arn:aws:s3:::bucket": {"env": "prd"},
        "arn:aws:sqs:us-east-1:222222222222:jobs": {"env": "dev"},
        "arn:aws:sqs:eu-west-1:222222222222:elsewhere": {"env": "dev"},
    }
    merged = {r.id: r for r in merge_tagged(listed, tagged, WHERE)}
    assert set(merged) == {"arn:aws:lambda:us-east-1:222222222222:function:w",
                           "arn:aws:sqs:us-east-1:222222222222:jobs"}
    fn = merged["arn:aws:lambda:us-east-1:222222222222:function:w"]
    assert (fn.name, dict(fn.tags)) == ("worker", {"env": "prd", "Name": "worker"})
    queue = merged["arn:aws:sqs:us-east-1:222222222222:jobs"]
    assert (queue.kind, queue.name, queue.parent, queue.scope) == ("sqs:queue", "jobs", "222222222222",
                                                                   "222222222222/us-east-1")


def test_org_records_declare_from_config() -> None:
    ou = transform_ou({"Id": "ou-1", "Arn": "arn:ou-1", "Name": "Payments"}, "arn:root", "/Root/Payments", {},
                      {"/Root/Payments": "production"})
    assert (ou.kind, ou.path, ou.name_signal, ou.declared, ou.parent) == (
        "aws:ou", "/Root/Payments", True, "production", "arn:root")
    account = transform_account({"Id": "222222222222", "Arn": "arn:acct", "Name": "orders"}, "arn:ou-1", {"a": "b"},
                                {"222222222222": "staging"})
    assert (account.id, account.aliases, account.declared, account.scope) == (
        "222222222222", ("arn:acct",), "staging", "organization")


def test_role_arns_and_global_regions() -> None:
    caller = Caller("111111111111", "aws", "arn:aws:iam::111111111111:user/scanner")
    by_name = AwsScanner(AwsSource(name="a", type="aws", assume_role="Reader"))
    assert by_name.role_arn(caller, "222222222222") == "arn:aws:iam::222222222222:role/Reader"
    template = AwsScanner(AwsSource(name="a", type="aws", assume_role="arn:aws:iam::{account}:role/path/R"))
    assert template.role_arn(caller, "222222222222") == "arn:aws:iam::222222222222:role/path/R"
    assert (global_region(["eu-west-1"]), global_region(["cn-northwest-1"])) == ("us-east-1", "cn-north-1")
    fixed = AwsScanner(AwsSource(name="a", type="aws", assume_role="arn:aws:iam::333333333333:role/R"))
    refused = fixed.assume(caller, "222222222222")  # refused before any call: it would scan 3333... as 2222...
    assert not isinstance(refused, Access) and "{account}" in refused.errors[0].hint


def test_failures_name_the_action_to_grant() -> None:
    assert iam_action("resourcegroupstaggingapi", "GetResources") == "tag:GetResources"

    api = Api(boto3.client("ec2", region_name="us-east-1"), "the role arn:aws:iam::2:role/R")  # no call is made
    denied = api.failure("DescribeVpcs", ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}},
                                                     "DescribeVpcs"))
    assert isinstance(denied, ScopeFailed)
    assert "ec2:DescribeVpcs" in denied.hint and "arn:aws:iam::2:role/R" in denied.hint
    throttled = api.failure("DescribeVpcs", ClientError({"Error": {"Code": "RequestLimitExceeded"}}, "DescribeVpcs"))
    assert "throttl" in throttled.hint
