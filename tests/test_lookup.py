"""Never-seen targets inside scanned containers: one lookup of their own tags, then the decision.

An Organization in a real moto server (a Sandbox and a Production OU, one account each), scanned into a
real SQLite store, checked over the real HTTP server; resources are launched in moto *after* the scan, so
no scan has seen them. Kubernetes: the fake API server driven by the official client.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.config import Config, config_from_dict
from envlabel.discovery.aws import make_sessions
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.aws_estate import MANAGEMENT, ROLE, EstateInfo, _Account, member
from tests.conftest import free_port
from tests.kubernetes_cluster import fake_cluster, seed_payments

REGION = "us-east-1"


@dataclass
class Org:
    moto: str
    store: Store
    config: Config
    url: str
    accounts: dict[str, _Account]

    def launch(self, account: str, tags: dict[str, str]) -> str:
        """An instance launched after the scan; returns its ARN."""
        return self.accounts[account].instance(REGION, "late", tags)

    def state(self, account: str, arn: str) -> str:
        instance_id = arn.rpartition("/")[2]
        ec2 = self.accounts[account].client("ec2", REGION)
        return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
                   ["State"]["Name"])


def aws_config(tmp_path: Path, endpoint: str, **extra: Any) -> Config:
    return config_from_dict({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}", **extra,
        "sources": [{"name": "aws", "type": "aws", "endpoint_url": endpoint, "regions": [REGION],
                     "organization": True, "assume_role": ROLE}]})


@pytest.fixture(scope="module")
def org(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    from tests.test_guard_boto3 import fresh_moto

    moto = fresh_moto(moto_url)
    info = EstateInfo(moto, MANAGEMENT, "")
    sessions = make_sessions()
    management = _Account(moto, MANAGEMENT, sessions(None), info, "management")
    organizations = management.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    root = organizations.list_roots()["Roots"][0]["Id"]
    accounts = {}
    for ou_name in ("Sandbox", "Production"):
        ou = organizations.create_organizational_unit(ParentId=root, Name=ou_name)["OrganizationalUnit"]["Id"]
        name = ou_name.lower()
        status = organizations.create_account(Email=f"{name}@example.com", AccountName=name)["CreateAccountStatus"]
        info.accounts[name] = status["AccountId"]
        organizations.move_account(AccountId=status["AccountId"], SourceParentId=root, DestinationParentId=ou)
        accounts[name] = member(management, info, name, sessions)
        accounts[name].instance(REGION, "existing", {})  # the region (and its default VPC) is in the scan
    config = aws_config(tmp_path_factory.mktemp("lookup"), moto)
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0])
    assert summary.complete, summary.errors
    with BackgroundServer(config, store) as server:
        yield Org(moto, store, config, server.url, accounts)


def check(url: str, target: str, action: str = "ec2:TerminateInstances") -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/check", json={"target": target, "action": action})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_just_launched_sandbox_instance_is_looked_up_labeled_stored_and_may_be_terminated(org: Org) -> None:
    arn = org.launch("sandbox", {"team": "scratch"})
    assert org.store.get(arn) is None  # no scan has seen it
    body = check(org.url, arn)
    assert (body["decision"], body["environment"]) == ("allow", "sandbox"), body["reasons"]
    assert any("looked up through source aws" in r and "no environment tag of its own" in r for r in body["reasons"])
    label = body["label"]
    assert label["found"] and label["authoritative"] and label["parent"].startswith(
        f"arn:aws:ec2:{REGION}:{org.accounts['sandbox'].id}:vpc/")  # placed in its VPC, as a scan would
    assert any(e["signal"] == "inherited" and "Sandbox" in e["detail"] for e in label["evidence"]), label
    history = httpx.get(f"{org.url}/v1/history", params={"target": arn}).json()["history"]
    assert [h["environment"] for h in history] == ["sandbox"]
    # the second check is the fast path: stored now, no lookup
    again = check(org.url, arn)
    assert again["decision"] == "allow" and not any("looked up" in r for r in again["reasons"])
    org.accounts["sandbox"].client("ec2", REGION).terminate_instances(InstanceIds=[arn.rpartition("/")[2]])
    assert org.state("sandbox", arn) in ("shutting-down", "terminated")


def test_a_just_launched_production_tagged_instance_in_a_sandbox_account_is_denied_and_survives(org: Org) -> None:
    arn = org.launch("sandbox", {"Environment": "production"})
    body = check(org.url, arn)
    assert (body["decision"], body["environment"]) == ("deny", "production"), body["reasons"]
    assert any("its environment tags Environment=production" in r for r in body["reasons"]), body["reasons"]
    assert body["label"]["conflict"] is True  # its own tag against its sandbox account: the strictest wins
    assert org.store.get(arn) is not None  # stored with its evidence
    assert org.state("sandbox", arn) == "running"


def test_an_instance_that_does_not_exist_is_production(org: Org) -> None:
    arn = f"arn:aws:ec2:{REGION}:{org.accounts['sandbox'].id}:instance/i-0123456789abcdef0"
    body = check(org.url, arn)
    assert (body["decision"], body["environment"], body["label"]["found"]) == ("deny", "production", False)
    assert any("no such object" in r for r in body["reasons"]), body["reasons"]
    assert org.store.get(arn) is None


def test_a_target_no_scanned_container_covers_is_production_and_says_why(org: Org) -> None:
    body = check(org.url, f"arn:aws:ec2:{REGION}:999999999999:instance/i-1")
    assert (body["decision"], body["environment"]) == ("deny", "production")
    assert any("its container 999999999999 is not in the store" in r for r in body["reasons"]), body["reasons"]
    bucket = check(org.url, "arn:aws:s3:::never-seen", "s3:DeleteBucket")
    assert bucket["decision"] == "deny" and any("names no account" in r for r in bucket["reasons"])


def test_an_unreachable_source_fails_closed(org: Org, tmp_path: Path) -> None:
    arn = org.launch("sandbox", {})
    dead = aws_config(tmp_path, f"http://127.0.0.1:{free_port()}").model_copy(update={"store": org.config.store})
    with BackgroundServer(dead, org.store) as server:
        body = check(server.url, arn)
    assert (body["decision"], body["environment"], body["label"]["found"]) == ("deny", "production", False)
    assert any(f"the lookup of {arn} failed" in r for r in body["reasons"]), body["reasons"]
    assert org.store.get(arn) is None and org.state("sandbox", arn) == "running"


def test_a_source_that_never_answers_fails_closed_at_the_deadline(org: Org, tmp_path: Path) -> None:
    arn = org.launch("sandbox", {})
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = aws_config(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}", lookup_timeout="1s")
        with BackgroundServer(config.model_copy(update={"store": org.config.store}), org.store) as server:
            body = check(server.url, arn)
    assert (body["decision"], body["environment"]) == ("deny", "production")
    assert any("lookup_timeout 1s" in r for r in body["reasons"]), body["reasons"]
    assert org.store.get(arn) is None


def test_lookups_can_be_turned_off(org: Org, tmp_path: Path) -> None:
    arn = org.launch("sandbox", {})
    config = aws_config(tmp_path, org.moto, lookup_timeout="0s").model_copy(update={"store": org.config.store})
    with BackgroundServer(config, org.store) as server:
        body = check(server.url, arn)
    assert body["decision"] == "deny" and any("lookups are off" in r for r in body["reasons"])


# -- Kubernetes ------------------------------------------------------------------------------------
def test_kubernetes_objects_created_after_the_scan_are_looked_up(tmp_path: Path) -> None:
    with fake_cluster(tmp_path) as cluster:
        seed_payments(cluster.fake)
        config = config_from_dict({
            "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
            "sources": [{"name": "prod-eu", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig),
                         "watch": False}]})
        store = open_store(config.store)
        assert run_source(config, store, config.sources[0]).complete
        cluster.fake.seed("deployments", "late", "scratch", labels={"app": "late"})
        cluster.fake.seed("deployments", "late-prod", "scratch", labels={"environment": "production"})
        with BackgroundServer(config, store) as server:
            sandbox = check(server.url, "k8s://prod-eu/scratch/deployments/late", "delete")
            production = check(server.url, "k8s://prod-eu/scratch/deploy/late-prod", "delete")
            missing = check(server.url, "k8s://prod-eu/scratch/deployments/nothing", "delete")
            unscanned = check(server.url, "k8s://prod-eu/scratch/pods/p", "delete")
        assert (sandbox["decision"], sandbox["environment"]) == ("allow", "sandbox"), sandbox["reasons"]
        assert store.get("k8s://prod-eu/scratch/deployments/late") is not None
        assert (production["decision"], production["environment"]) == ("deny", "production")
        assert missing["decision"] == "deny" and any("no such object" in r for r in missing["reasons"])
        assert unscanned["decision"] == "deny" and any("does not scan pods" in r for r in unscanned["reasons"])
        # the production-tagged deployment is still there
        assert cluster.fake.find(cluster.fake.kind("deployments"), "scratch", "late-prod")
