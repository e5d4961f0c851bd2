"""The boto3 guard's targets from real botocore operations: resources named by several parameters and by bare
``name``/``Id`` parameters (the generated envlabel/data/aws-targets.json.gz), pure and over real sockets (an
ECS service in moto, deleted through the guard, checked by the real envlabel API)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import boto3
import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied
from envlabel.guard.arns import DATA, TABLE_VERSION, Target, targets_of
from envlabel.guard.boto3 import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.estates import scan_of

ACCOUNT = "123456789012"  # the account moto gives the plain test credentials
P = "222222222222"  # another account
REGION = "us-east-1"
A = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:"
CONTENTS = ACCOUNT + "/*"  # the account, decided as the strictest label inside it


def render(targets: list[Target]) -> list[str]:
    return [t.id + ("/*" if t.contents else "") for t in targets]


# -- pure ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("service", "operation", "params", "expected"), [
    # several variables: arn:...:service/${ClusterName}/${ServiceName}, every one from its parameter
    ("ecs", "UpdateService", {"cluster": "orders", "service": "api", "desiredCount": 0},
     [A.format("ecs") + "service/orders/api"]),
    ("ecs", "DeleteService", {"cluster": "orders", "service": "api", "force": True},
     [A.format("ecs") + "service/orders/api"]),
    ("ecs", "StopTask", {"cluster": "orders", "task": "0123abcd"}, [A.format("ecs") + "task/orders/0123abcd"]),
    ("connect", "DeleteContactFlow", {"InstanceId": "inst-1", "ContactFlowId": "flow-1"},
     [A.format("connect") + "instance/inst-1/contact-flow/flow-1"]),
    ("scheduler", "DeleteSchedule", {"GroupName": "nightly", "Name": "export"},
     [A.format("scheduler") + "schedule/nightly/export"]),
    # the resource given by its ARN is that ARN, in its own account
    ("ecs", "DeleteService", {"cluster": "orders", "service": f"arn:aws:ecs:{REGION}:{P}:service/orders/api"},
     [f"arn:aws:ecs:{REGION}:{P}:service/orders/api"]),
    # the events rule of a named bus is rule/BUS/NAME, not also the default bus's rule/NAME
    ("events", "PutTargets", {"Rule": "r", "EventBusName": "orders", "Targets": []},
     [A.format("events") + "rule/orders/r"]),
    ("events", "PutTargets", {"Rule": "r", "Targets": []}, [A.format("events") + "rule/r"]),
    # bare name/id: the one resource type the IAM action declares
    ("eks", "DeleteCluster", {"name": "orders"}, [A.format("eks") + "cluster/orders"]),
    ("eks", "DeleteEksAnywhereSubscription", {"id": "sub-1"}, [A.format("eks") + "eks-anywhere-subscription/sub-1"]),
    ("ecs", "DeleteCluster", {"cluster": "orders"}, [A.format("ecs") + "cluster/orders"]),
    ("glue", "DeleteTable", {"DatabaseName": "sales", "Name": "orders"},
     [A.format("glue") + "table/sales/orders", A.format("glue") + "database/sales"]),
    # ...several declared types: the one the operation's noun names (not the FIS action with the same id)
    ("fis", "UpdateExperimentTemplate", {"id": "EXT1"}, [A.format("fis") + "experiment-template/EXT1"]),
    # sqs and sns, by URL and ARN, as they were
    ("sqs", "DeleteQueue", {"QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs"},
     [A.format("sqs") + "jobs"]),
    ("sqs", "TagQueue", {"QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{P}/jobs", "Tags": {}},
     [f"arn:aws:sqs:{REGION}:{P}:jobs"]),
    ("sns", "DeleteTopic", {"TopicArn": A.format("sns") + "alerts"}, [A.format("sns") + "alerts"]),
    ("sns", "Subscribe",
     {"TopicArn": A.format("sns") + "alerts", "Protocol": "sqs", "Endpoint": A.format("sqs") + "jobs"},
     [A.format("sns") + "alerts", A.format("sqs") + "jobs"]),
])
def test_resources_named_by_several_or_bare_parameters(service: str, operation: str, params: dict[str, Any],
                                                       expected: list[str]) -> None:
    assert render(targets_of(service, operation, params, REGION, ACCOUNT)) == expected


@pytest.mark.parametrize(("service", "operation", "params", "expected"), [
    # a parameter missing (ECS's implied default cluster): the service cannot be named, so the whole account
    ("ecs", "DeleteService", {"service": "api"}, [CONTENTS]),
    # a container given as an ARN is not spliced into the service's ARN: the cluster and the account instead
    ("ecs", "DeleteService", {"cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/orders", "service": "api"},
     [CONTENTS, A.format("ecs") + "cluster/orders"]),
    # a value that is a path could name another resource once spliced: the account's strictest label
    ("ecs", "DeleteService", {"cluster": "sandbox", "service": "x/../api"}, [CONTENTS]),
    # Create*: the new thing is no target (IAM declares only the service for ecs:CreateService, so not even
    # its cluster): what it is created in inherits the account's label
    ("ecs", "CreateService", {"cluster": "orders", "serviceName": "new"}, [ACCOUNT]),
    ("eks", "CreateCluster", {"name": "new"}, [ACCOUNT]),
    ("sns", "CreateTopic", {"Name": "alerts"}, [ACCOUNT]),
    # a bare Name two declared types could take, neither of them the operation's noun: nothing guessed
    ("events", "DeleteRule", {"Name": "r", "EventBusName": "orders"}, [CONTENTS]),
])
def test_what_cannot_be_named_safely_falls_back_to_the_account(service: str, operation: str,
                                                               params: dict[str, Any], expected: list[str]) -> None:
    assert render(targets_of(service, operation, params, REGION, ACCOUNT)) == expected


def test_the_shipped_table_is_the_format_the_guard_reads() -> None:
    raw = resources.files("envlabel").joinpath(DATA).read_bytes()
    assert json.loads(gzip.decompress(raw))["version"] == TABLE_VERSION


# -- over real sockets -----------------------------------------------------------------------------
CLUSTER = "targets-orders"


@pytest.fixture(scope="module")
def ecs_estate(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """Two services in one moto ECS cluster, labeled production and sandbox by their own tags; the account
    carries no signal, so anything checked against it is decided as production."""
    ecs = boto3.client("ecs", endpoint_url=moto_url, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    ecs.create_cluster(clusterName=CLUSTER)
    arns = {}
    for name, environment in (("orders-api", "production"), ("scratch-api", "sandbox")):
        created = ecs.create_service(cluster=CLUSTER, serviceName=name, desiredCount=0,
                                     tags=[{"key": "Environment", "value": environment}])
        arns[name] = created["service"]["serviceArn"]
    assert arns["orders-api"] == A.format("ecs") + f"service/{CLUSTER}/orders-api"  # the format the table builds
    labeled = [Resource(arns[name], "aws", "ecs", name, ACCOUNT, {"Environment": environment}, f"{ACCOUNT}/{REGION}")
               for name, environment in (("orders-api", "production"), ("scratch-api", "sandbox"))]
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('targets') / 'envlabel.db'}")
    now = utcnow()
    commit_scan(store, Taxonomy(), scan_of([Resource(ACCOUNT, "aws", "aws:account", "test", None, {}, "org"),
                                            *labeled]), now, now)
    with BackgroundServer(config_from_dict({}), store) as server:
        yield ecs, server.url


def service_names(ecs: Any) -> set[str]:
    """The services of the cluster still active (a deleted one is listed INACTIVE for a while)."""
    found = ecs.describe_services(cluster=CLUSTER, services=["orders-api", "scratch-api"])["services"]
    return {s["serviceName"] for s in found if s["status"] == "ACTIVE"}


def test_deleting_a_production_ecs_service_by_cluster_and_name_is_denied(ecs_estate: tuple[Any, str],
                                                                        moto_url: str) -> None:
    ecs, envlabel = ecs_estate
    guarded = boto3.client("ecs", endpoint_url=moto_url, region_name=REGION, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
    protect(guarded, Client(envlabel))
    with pytest.raises(ActionDenied) as caught:
        guarded.delete_service(cluster=CLUSTER, service="orders-api", force=True)
    assert caught.value.check["target"] == A.format("ecs") + f"service/{CLUSTER}/orders-api"
    assert "orders-api" in service_names(ecs)  # never sent
    # the sandbox service of the same cluster is named itself, not the account (which would be production)
    guarded.delete_service(cluster=CLUSTER, service="scratch-api", force=True)
    assert service_names(ecs) == {"orders-api"}
