"""The bundled demo estate: a small, messy, realistic estate built inside local fakes.

One function per provider builds its part and returns a :class:`DemoPart`: the config
sources that scan it, the targets worth showing, the checks worth trying, and how to stop
the fake. The AWS part is an Organization in an in-process moto server with production,
staging and sandbox OUs, messy tags, an account with no signal at all, a tag that
contradicts its account, a production EKS cluster, and a production/staging twin whose
resources have identical names (RDS ``orders-db`` and Lambda ``orders-api`` in both) - the
situation envlabel exists for. The Kubernetes part is that EKS cluster (a fake API server)
with a namespace labeled staging inside it; the GCP part a fake Resource Manager holding an
organization with Production/Staging/Sandbox folders and a project whose label contradicts
its folder, and a fake Cloud Asset Inventory holding the resources below those projects (VMs,
disks, buckets, Cloud SQL, a GKE cluster...), among them a VM labeled ``env: prod`` inside the
sandbox project ``ml-playground``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGIONS = ("us-east-1", "eu-west-1")
#: moto's default account: the organization's management account.
MANAGEMENT_ACCOUNT = "123456789012"
# Dummy credentials: the demo must never reach (or sign with the keys of) a real AWS account.
DEMO_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_SESSION_TOKEN": "demo",
    "AWS_DEFAULT_REGION": REGIONS[0], "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass(frozen=True)
class Highlight:
    """A target worth showing after the scan: what it is, and its id."""

    what: str
    target: str
    expected: str


@dataclass(frozen=True)
class CheckExample:
    """An action worth checking after the scan, and the decision the demo's default policy gives."""

    what: str
    target: str
    action: str
    decision: str


@dataclass(frozen=True)
class DemoContext:
    """What a part's builder gets: the demo directory (for files its source needs) and the ids
    earlier parts published in :attr:`DemoPart.anchors` (the EKS cluster a Kubernetes source sits in)."""

    directory: Path
    anchors: Mapping[str, str]


@dataclass
class DemoPart:
    """What one provider's fake contributes to the demo."""

    provider: str
    sources: list[dict[str, Any]]
    highlights: list[Highlight] = field(default_factory=list)
    checks: list[CheckExample] = field(default_factory=list)
    #: ids later parts may hang their resources under, by role (e.g. ``"eks-cluster"``)
    anchors: dict[str, str] = field(default_factory=dict)
    stop: Callable[[], None] = lambda: None


# -- AWS ------------------------------------------------------------------------------------------
#: OU path -> tags. Names declare the environment (Production, Staging, Sandbox); Shared declares none.
OUS: dict[str, dict[str, str]] = {
    "/Root/Production": {},
    "/Root/Production/EU": {"CostCenter": "eu-ops"},
    "/Root/Staging": {},
    "/Root/Sandbox": {"Owner": "platform"},
    "/Root/Shared": {},
}
#: account name -> (OU path, tags). Messy on purpose: prd, UAT, dev, Prod-EU, nonprod.
ACCOUNTS: dict[str, tuple[str, dict[str, str]]] = {
    "orders-prod": ("/Root/Production", {"CostCenter": "orders"}),
    "payments-prod": ("/Root/Production/EU", {"env": "prd"}),
    "orders-staging": ("/Root/Staging", {"Stage": "UAT"}),
    "dev-sandbox": ("/Root/Sandbox", {"ENV": "dev"}),
    "data-lake": ("/Root/Shared", {"Environment": "Prod-EU"}),
    "shared-tools": ("/Root/Shared", {"Environment": "nonprod"}),  # no usable signal: unknown, fails closed
}


class AwsEstate:
    """Builds the demo Organization through boto3 against ``endpoint_url`` (moto)."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3

        self.endpoint_url = endpoint_url
        self.session: Any = boto3.session.Session(aws_access_key_id=DEMO_AWS_ENV["AWS_ACCESS_KEY_ID"],
                                             aws_secret_access_key=DEMO_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                                             region_name=REGIONS[0])
        self.accounts: dict[str, str] = {}
        self.eks_cluster = ""
        self._clients: dict[tuple[str, str | None, str], Any] = {}

    def client(self, service: str, account: str | None = None, region: str = REGIONS[0]) -> Any:
        key = (service, account, region)
        if key not in self._clients:
            self._clients[key] = self._new_client(service, account, region)
        return self._clients[key]

    def _new_client(self, service: str, account: str | None, region: str) -> Any:
        if account is None or account == MANAGEMENT_ACCOUNT:
            return self.session.client(service, region_name=region, endpoint_url=self.endpoint_url)
        # moto keeps each account's resources apart by the credentials' account: act as the member.
        creds = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="demo",
        )["Credentials"]
        return self.session.client(service, region_name=region, endpoint_url=self.endpoint_url,
                                   aws_access_key_id=creds["AccessKeyId"],
                                   aws_secret_access_key=creds["SecretAccessKey"],
                                   aws_session_token=creds["SessionToken"])

    def build(self) -> None:
        self.build_organization()
        for name in ("orders-prod", "orders-staging"):
            self.build_orders_twin(self.accounts[name], staging=name == "orders-staging")
        self.build_payments(self.accounts["payments-prod"])
        self.build_sandbox(self.accounts["dev-sandbox"])
        self.build_shared(self.accounts["data-lake"], self.accounts["shared-tools"])

    def build_organization(self) -> None:
        org = self.client("organizations")
        org.create_organization(FeatureSet="ALL")
        ou_ids = {"/Root": org.list_roots()["Roots"][0]["Id"]}
        for path, tags in OUS.items():
            parent, _, name = path.rpartition("/")
            ou = org.create_organizational_unit(ParentId=ou_ids[parent], Name=name, Tags=aws_tags(tags))
            ou_ids[path] = ou["OrganizationalUnit"]["Id"]
        for name, (path, tags) in ACCOUNTS.items():
            status = org.create_account(Email=f"{name}@example.com", AccountName=name, Tags=aws_tags(tags))
            account = status["CreateAccountStatus"]["AccountId"]
            org.move_account(AccountId=account, SourceParentId=ou_ids["/Root"], DestinationParentId=ou_ids[path])
            self.accounts[name] = account

    def vpc(self, account: str, region: str, name: str, tags: dict[str, str] | None = None) -> tuple[str, list[str]]:
        """A VPC with two subnets and a security group; returns (vpc id, subnet ids)."""
        ec2 = self.client("ec2", account, region)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[
            {"ResourceType": "vpc", "Tags": aws_tags({"Name": name, **(tags or {})})}])["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{region}{zone}",
                                     TagSpecifications=[{"ResourceType": "subnet",
                                                         "Tags": aws_tags({"Name": f"{name}-{zone}"})}],
                                     )["Subnet"]["SubnetId"] for n, zone in enumerate("ab")]
        ec2.create_security_group(GroupName=f"{name}-app", Description="app tier", VpcId=vpc)
        return vpc, subnets

    def database(self, account: str, region: str, name: str, subnets: list[str],
                 tags: dict[str, str] | None = None) -> None:
        rds = self.client("rds", account, region)
        group = f"{name}-subnets"
        rds.create_db_subnet_group(DBSubnetGroupName=group, DBSubnetGroupDescription=name, SubnetIds=subnets)
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.medium", Engine="postgres",
                               AllocatedStorage=20, MasterUsername="orders", MasterUserPassword="not-a-secret",
                               DBSubnetGroupName=group, Tags=aws_tags(tags or {}))

    def function(self, account: str, region: str, name: str, subnets: list[str] | None = None,
                 tags: dict[str, str] | None = None) -> None:
        iam = self.client("iam", account, region)
        role_name = "demo-lambda"
        try:
            role = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}),
            )["Role"]["Arn"]
        extra: dict[str, Any] = {"VpcConfig": {"SubnetIds": subnets, "SecurityGroupIds": []}} if subnets else {}
        self.client("lambda", account, region).create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
            Code={"ZipFile": _zip("def handler(event, context):\n    return {}\n")}, Tags=tags or {}, **extra)

    # -- the accounts ------------------------------------------------------------------------------
    def build_orders_twin(self, account: str, staging: bool) -> None:
        """Production and staging look exactly alike: same names, same shapes, no environment tags."""
        region = REGIONS[0]
        _vpc, subnets = self.vpc(account, region, "orders")
        self.database(account, region, "orders-db", subnets, {"team": "orders"})
        self.function(account, region, "orders-api", subnets, {"team": "orders"})
        ec2 = self.client("ec2", account, region)
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="t3.small",
                          SubnetId=subnets[0], TagSpecifications=[{"ResourceType": "instance",
                                                                   "Tags": aws_tags({"Name": "orders-worker"})}])
        self.client("s3", account, region).create_bucket(Bucket=f"orders-assets-{account}")
        if not staging:
            # Someone tagged a production replica "sandbox": the account says production; conflict.
            self.database(account, region, "orders-replica", subnets, {"Environment": "sandbox"})
            # The cluster the demo's Kubernetes part serves: its namespaces inherit this account's production.
            self.eks_cluster = self.client("eks", account, region).create_cluster(
                name=EKS_CLUSTER, roleArn=f"arn:aws:iam::{account}:role/eks", tags={"team": "orders"},
                resourcesVpcConfig={"subnetIds": subnets})["cluster"]["arn"]

    def build_payments(self, account: str) -> None:
        region = REGIONS[1]
        _vpc, subnets = self.vpc(account, region, "payments", {"Environment": "Prod-EU"})
        self.client("ec2", account, region).run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.small", SubnetId=subnets[0])
        self.client("dynamodb", account, region).create_table(
            TableName="payments-ledger", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])

    def build_sandbox(self, account: str) -> None:
        for region in REGIONS:
            _vpc, subnets = self.vpc(account, region, "dev")
            self.client("ec2", account, region).run_instances(
                ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnets[0],
                TagSpecifications=[{"ResourceType": "instance", "Tags": aws_tags({"Name": "alice-scratch"})}])
        self.function(account, REGIONS[0], "orders-api", tags={"Environment": "dev"})

    def build_shared(self, data_lake: str, shared_tools: str) -> None:
        self.client("s3", data_lake, REGIONS[0]).create_bucket(Bucket=f"lake-raw-{data_lake}")
        self.client("dynamodb", data_lake, REGIONS[1]).create_table(
            TableName="lake-catalog", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        _vpc, subnets = self.vpc(shared_tools, REGIONS[0], "tools")
        self.client("ec2", shared_tools, REGIONS[0]).run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.small", SubnetId=subnets[0],
            TagSpecifications=[{"ResourceType": "instance", "Tags": aws_tags({"Name": "ci-runner"})}])

    def twin_db(self, account_name: str) -> str:
        return f"arn:aws:rds:{REGIONS[0]}:{self.accounts[account_name]}:db:orders-db"

    def checks(self) -> list[CheckExample]:
        sandbox_api = f"arn:aws:lambda:{REGIONS[0]}:{self.accounts['dev-sandbox']}:function:orders-api"
        return [
            CheckExample("may an agent delete the production orders-db?", self.twin_db("orders-prod"),
                         "rds:DeleteDBInstance", "deny"),
            CheckExample("and its staging twin?", self.twin_db("orders-staging"), "rds:DeleteDBInstance",
                         "require_approval"),
            CheckExample("the sandbox orders-api Lambda (same name again)?", sandbox_api, "lambda:DeleteFunction",
                         "allow"),
        ]

    def highlights(self) -> list[Highlight]:
        prod, staging = self.accounts["orders-prod"], self.accounts["orders-staging"]
        region = REGIONS[0]
        return [
            Highlight("the production orders-db", f"arn:aws:rds:{region}:{prod}:db:orders-db", "production"),
            Highlight("its staging twin (same name, same shape)", f"arn:aws:rds:{region}:{staging}:db:orders-db",
                      "staging"),
            Highlight("a production replica tagged sandbox (conflict)",
                      f"arn:aws:rds:{region}:{prod}:db:orders-replica", "production"),
            Highlight("an account with no usable signal (fails closed)", self.accounts["shared-tools"], "unknown"),
        ]


def start_aws(_context: DemoContext) -> DemoPart:
    """An in-process moto server on a free loopback port, holding the demo Organization."""
    from moto.server import ThreadedMotoServer

    os.environ.update(DEMO_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        estate = AwsEstate(endpoint)
        estate.build()
    except BaseException:
        server.stop()
        raise
    source = {"name": "demo-aws", "type": "aws", "endpoint_url": endpoint, "regions": list(REGIONS),
              "organization": True}
    return DemoPart("aws", [source], estate.highlights(), estate.checks(), {"eks-cluster": estate.eks_cluster},
                    server.stop)


# -- Kubernetes -----------------------------------------------------------------------------------
EKS_CLUSTER = "orders-eks"
KUBECONFIG_NAME = "kubeconfig"


def start_kubernetes(context: DemoContext) -> DemoPart:
    """The production EKS cluster's API: a fake API server on a free loopback port, seeded with
    namespaces and workloads; its source's ``parent`` is the EKS cluster, so it inherits production."""
    from envlabel.service.demo.fakes.kubernetes_api import start_fake_cluster, write_kubeconfig
    from envlabel.service.demo.fakes.kubernetes_state import seed_demo_cluster

    url, fake = start_fake_cluster()
    try:
        seed_demo_cluster(fake)
        fake.seed("namespaces", "payments", labels={"team": "payments"})
        fake.seed("deployments", "payments-api", "payments", labels={"app": "payments-api"})
        kubeconfig = write_kubeconfig(context.directory / KUBECONFIG_NAME, url, context=EKS_CLUSTER)
    except BaseException:
        fake.stop()
        raise
    source: dict[str, Any] = {"name": "demo-k8s", "type": "kubernetes", "kubeconfig": str(kubeconfig),
                              "context": EKS_CLUSTER, "cluster": EKS_CLUSTER, "watch": True}
    if "eks-cluster" in context.anchors:
        source["parent"] = context.anchors["eks-cluster"]
    highlights = [
        Highlight("a Deployment in an unlabeled namespace (inherits the cluster)",
                  f"k8s://{EKS_CLUSTER}/orders/deployments/orders-api", "production"),
        Highlight("the same Deployment in a namespace labeled staging inside it (conflict)",
                  f"k8s://{EKS_CLUSTER}/orders-preview/deployments/orders-api", "production"),
    ]
    checks = [CheckExample("may an agent delete a production Deployment?",
                           f"k8s://{EKS_CLUSTER}/orders/deployments/orders-api", "delete", "deny")]
    return DemoPart("kubernetes", [source], highlights, checks, stop=fake.stop)


# -- GCP ------------------------------------------------------------------------------------------
def start_gcp(_context: DemoContext) -> DemoPart:
    """A fake Cloud Resource Manager and Cloud Asset Inventory on a free loopback port, holding the example
    organization and the resources in its projects."""
    from envlabel.service.demo.fakes.gcp_assets import EXAMPLE_ASSET_HIGHLIGHTS
    from envlabel.service.demo.fakes.gcp_crm import EXAMPLE_HIGHLIGHTS, ORG_ID, start_fake_gcp

    url, server = start_fake_gcp()
    source = {"name": "demo-gcp", "type": "gcp", "organization": ORG_ID, "api_endpoint": url}
    highlights = [Highlight(what, target, expected)
                  for what, target, expected in EXAMPLE_HIGHLIGHTS + EXAMPLE_ASSET_HIGHLIGHTS]
    vm1, trainer = (next(target for what, target, expected in EXAMPLE_ASSET_HIGHLIGHTS
                         if expected == env and what.startswith("a VM")) for env in ("sandbox", "production"))
    checks = [CheckExample("may an agent delete the unlabeled VM in the sandbox project?", vm1,
                           "compute.instances.delete", "allow"),
              CheckExample("and the VM labeled env: prod beside it?", trainer, "compute.instances.delete", "deny")]
    return DemoPart("gcp", [source], highlights, checks, stop=server.stop)


#: one builder per provider, started in this order (Kubernetes hangs its cluster under AWS's EKS cluster).
PARTS: list[Callable[[DemoContext], DemoPart]] = [start_aws, start_kubernetes, start_gcp]


def aws_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` -> AWS's ``[{"Key": "k", "Value": "v"}]``."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()
