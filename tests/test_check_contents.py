"""``contents``: "anything in this account" decided as the strictest of the account and everything below it.

One account in a real moto server, declared sandbox (``account_environments``), holding a bucket tagged
Environment=prod and a sandbox instance; scanned into a real SQLite store and checked over the real HTTP
server, the MCP tool at ``/mcp`` and the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import boto3
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from envlabel.config import config_from_dict
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.estates import cli

ACCOUNT = "123456789012"  # the account moto gives the plain test credentials
REGION = "us-east-1"
BUCKET = "arn:aws:s3:::prod-ledger"


@dataclass
class Estate:
    moto: str
    url: str
    config_file: Path
    vpc: str

    def s3(self) -> Any:
        return boto3.client("s3", region_name=REGION, endpoint_url=self.moto)


@pytest.fixture(scope="module")
def estate(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    from tests.test_guard_boto3 import fresh_moto

    moto = fresh_moto(moto_url)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto)
    s3.create_bucket(Bucket="prod-ledger")
    s3.put_bucket_tagging(Bucket="prod-ledger", Tagging={"TagSet": [{"Key": "Environment", "Value": "prod"}]})
    s3.put_object(Bucket="prod-ledger", Key="ledger.csv", Body=b"1")
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto)
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "ENV", "Value": "dev"}]}])["Instances"][0]
    directory = tmp_path_factory.mktemp("contents")
    data = {"store": f"sqlite:///{directory / 'envlabel.db'}",
            "sources": [{"name": "aws", "type": "aws", "endpoint_url": moto, "regions": [REGION],
                         "account_environments": {ACCOUNT: "sandbox"}}]}
    config = config_from_dict(data)
    config_file = directory / "envlabel.yaml"
    config_file.write_text(json.dumps(data))
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0])
    assert summary.complete, summary.errors
    with BackgroundServer(config, store) as server:
        yield Estate(moto, server.url, config_file,
                     f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{instance['VpcId']}")


def check(estate: Estate, target: str, action: str, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{estate.url}/v1/check", json={"target": target, "action": action, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_production_resource_inside_a_sandbox_account_makes_anything_in_it_production(estate: Estate) -> None:
    alone = check(estate, ACCOUNT, "sqs:PurgeQueue")
    assert (alone["decision"], alone["environment"]) == ("allow", "sandbox")  # the account's own label
    body = check(estate, ACCOUNT, "sqs:PurgeQueue", contents=True)
    assert (body["decision"], body["environment"], body["action_class"]) == ("deny", "production", "delete")
    assert body["label"]["environment"] == "sandbox"  # the label JSON stays the target's own
    assert any(r.startswith(f"{BUCKET} inside {ACCOUNT} is production (tag Environment=prod")
               for r in body["reasons"]), body["reasons"]
    assert body["reasons"][-1] == "policy: delete in production is deny"
    # what the agent obeyed the deny for is still there
    assert estate.s3().list_objects_v2(Bucket="prod-ledger")["KeyCount"] == 1


def test_contents_keeps_reads_allowed_and_modifies_ask(estate: Estate) -> None:
    assert check(estate, ACCOUNT, "DescribeInstances", contents=True)["decision"] == "allow"
    modify = check(estate, ACCOUNT, "ec2:ModifyInstanceAttribute", contents=True)
    assert (modify["decision"], modify["environment"]) == ("require_approval", "production")
    assert any("no approvers are configured for production" in r for r in modify["reasons"])
    assert modify["approval"]["status"] == "pending" and modify["approval"]["id"] in modify["reasons"][-1]


def test_contents_of_a_subtree_with_nothing_stricter_decides_as_its_own_label(estate: Estate) -> None:
    body = check(estate, estate.vpc, "ec2:DeleteVpc", contents=True)
    assert (body["decision"], body["environment"]) == ("allow", "sandbox"), body["reasons"]
    assert any("is stricter than sandbox" in r for r in body["reasons"]), body["reasons"]


def test_contents_of_a_target_never_seen_is_production(estate: Estate) -> None:
    body = check(estate, "arn:aws:ec2:us-east-1:999999999999:vpc/vpc-1", "ec2:DeleteVpc", contents=True)
    assert (body["decision"], body["environment"]) == ("deny", "production")
    assert any("what it holds was not read" in r for r in body["reasons"])


def test_contents_must_be_a_boolean(estate: Estate) -> None:
    response = httpx.post(f"{estate.url}/v1/check", json={"target": ACCOUNT, "action": "x", "contents": "maybe"})
    assert response.status_code == 422 and "contents" in response.json()["message"]


def test_the_cli_and_the_mcp_tool_take_contents(estate: Estate) -> None:
    result = cli(estate.config_file, "check", "--contents", "--action", "sqs:PurgeQueue", ACCOUNT)
    assert result.exit_code == 5 and f"{BUCKET} inside {ACCOUNT} is production" in result.output
    assert cli(estate.config_file, "check", "--action", "sqs:PurgeQueue", ACCOUNT).exit_code == 0

    async def main() -> dict[str, Any]:
        async with (httpx2.AsyncClient() as http,
                    Client(streamable_http_client(f"{estate.url}/mcp", http_client=http)) as client):
            result = await client.call_tool("check_action", {"target": ACCOUNT, "action": "sqs:PurgeQueue",
                                                             "contents": True})
            assert not result.is_error and result.structured_content is not None
            return result.structured_content

    assert anyio.run(main)["decision"] == "deny"
