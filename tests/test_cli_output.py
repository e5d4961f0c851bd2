"""Output that explains itself: ``get`` says why a target is unknown and shows the evidence chain container by
container, ``list`` aligns its columns and shows human names, ``scan`` reports the pass's real duration.

Real SQLite stores filled through the real pipeline (tests/api_estate.py, hand-built estates through
``commit_scan``, a fake Kubernetes API server scanned by the real scanner, and the moto estate), read by the real
command through click's runner and by the real HTTP server."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.cli import main
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan, run_source
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import GONE_DB, NEVER_SEEN, PROD_DB, populate
from tests.aws_estate import fresh_estate
from tests.kubernetes_cluster import FakeCluster, fake_cluster

ORG = "arn:aws:organizations::111111111111"
ROOT = f"{ORG}:root/o-test/r-0001"
EKS = "arn:aws:eks:us-east-1:222222222222:cluster/orders"
DEPLOYMENT = "k8s://orders-eks/orders/deployments/api"
BUCKET = "arn:aws:s3:::shared-assets-555555555555"


def ou(name: str) -> Resource:
    return Resource(f"{ORG}:ou/o-test/ou-{name.lower()}", "aws", "aws:ou", name, ROOT, {}, "org",
                    name_signal=True, path=f"/Root/{name}")


def organization(*members: Resource) -> list[Resource]:
    root = Resource(ROOT, "aws", "aws:root", "Root", None, {}, "org", path="/Root")
    return [root, ou("Production"), ou("Shared"), *members]


def write_config(tmp_path: Path, **fields: Any) -> Path:
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", **fields}))
    return path


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def commit(tmp_path: Path, source: str, resources: list[Resource]) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    try:
        now = utcnow()
        commit_scan(store, Taxonomy(), ScanResult(source, resources, scopes=frozenset({"org"})), now, now)
    finally:
        store.close()


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    """tests/api_estate.py: twins told apart by their OU, a stale db, a retired (tombstoned) db."""
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    try:
        populate(store)
    finally:
        store.close()
    return write_config(tmp_path)


# -- item 4: get on an unknown or a gone target says why ------------------------------------------------------


def test_get_on_an_unknown_target_names_the_tag_it_could_not_read_and_the_containers_it_walked(
        tmp_path: Path) -> None:
    account = Resource("555555555555", "aws", "aws:account", "shared-services", ou("Shared").id,
                       {"Environment": "nonprod", "CostCenter": "platform"}, "org")
    bucket = Resource(BUCKET, "aws", "s3:bucket", "shared-assets", account.id, {}, "org")
    commit(tmp_path, "aws", organization(account, bucket))
    config = write_config(tmp_path)

    shown = cli(config, "get", BUCKET)
    assert shown.exit_code == 0, shown.output  # seen, labeled unknown: not the never-seen exit 3
    lines = shown.stdout.splitlines()
    assert lines[:2] == [f"{BUCKET}: unknown",
                         "  treated as production: no environment signal on it or on any container above it"]
    assert ("  seen but not read: Environment=nonprod on aws:account shared-services (555555555555) names no "
            "environment (production, staging, sandbox); fix the tag, or add the value to synonyms: in the config"
            ) in lines
    path_rows = lines[lines.index("  path (the target first, then each container above it):") + 1:]
    assert [row.split()[:2] for row in path_rows] == [
        ["s3:bucket", "shared-assets"], ["aws:account", "shared-services"], ["aws:ou", "Shared"],
        ["aws:root", "Root"]]
    assert all(row.endswith("no signal") for row in path_rows)
    assert len({row.index("no signal") for row in path_rows}) == 1  # one aligned column

    body = json.loads(cli(config, "get", BUCKET, "--json").stdout)
    assert (body["environment"], body["found"], body["evidence"]) == ("unknown", True, [])
    assert [(n["id"], n["environment"], n["unread"]) for n in body["path"]] == [
        (BUCKET, None, []), (account.id, None, ["Environment=nonprod"]), (ou("Shared").id, None, []),
        (ROOT, None, [])]


def test_a_synonym_for_the_unread_value_makes_the_same_chain_decide(tmp_path: Path) -> None:
    """The hint is true: adding the value it names under synonyms: reads the tag."""
    account = Resource("555555555555", "aws", "aws:account", "shared-services", ou("Shared").id,
                       {"Environment": "nonprod"}, "org")
    commit(tmp_path, "aws", organization(account))
    config = write_config(tmp_path, synonyms={"staging": ["staging", "nonprod"]})
    body = json.loads(cli(config, "get", "555555555555", "--json").stdout)
    assert body["path"][0]["unread"] == []
    assert body["path"][0]["environment"] == "staging"


def test_a_tombstoned_target_says_gone_since_not_never_seen(estate: Path) -> None:
    shown = cli(estate, "get", GONE_DB)
    assert shown.exit_code == 3
    body = json.loads(cli(estate, "get", GONE_DB, "--json").stdout)
    first = shown.stdout.splitlines()[0]
    assert first == (f"{GONE_DB}: unknown - gone since {body['gone_at']} (a complete scan no longer sees it); "
                     "treated as production")
    assert "never seen" not in shown.stdout
    assert "  was rds:db 'retired' in 777777777777" in shown.stdout
    assert [n["id"] for n in body["path"]][:2] == [GONE_DB, "777777777777"]


def test_a_never_seen_target_says_so_and_what_to_do(estate: Path) -> None:
    shown = cli(estate, "get", NEVER_SEEN)
    assert shown.exit_code == 3
    assert shown.stdout.splitlines() == [
        f"{NEVER_SEEN}: unknown - never seen by a complete scan; treated as production",
        "  check the spelling (envlabel list shows what is known), or scan its source (envlabel scan)"]
    body = json.loads(cli(estate, "get", NEVER_SEEN, "--json").stdout)
    assert (body["found"], body["path"]) == (False, [])


def test_get_at_a_past_time_keeps_its_answer_without_a_path(estate: Path) -> None:
    """The containers as they stand now may not be those of then: a past label carries no path."""
    body = json.loads(cli(estate, "get", PROD_DB, "--json", "--at", utcnow().isoformat()).stdout)
    assert body["environment"] == "production" and "path" not in body


# -- item 5: the evidence chain, across providers ---------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path) as running:
        running.fake.seed("namespaces", "orders")
        running.fake.seed("deployments", "api", "orders")
        yield running


def scan_cluster(tmp_path: Path, cluster: FakeCluster, parent: str) -> Path:
    source = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "parent": parent}
    config = write_config(tmp_path, sources=[source])
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    try:
        loaded = config_from_dict(yaml.safe_load(config.read_text()))
        assert run_source(loaded, store, loaded.source("orders-eks")).complete
    finally:
        store.close()
    return config


def test_a_deployment_decided_by_an_aws_ou_shows_every_container_up_to_it(
        tmp_path: Path, cluster: FakeCluster) -> None:
    """deployment -> namespace -> cluster -> EKS cluster -> account -> OU: only the OU's name speaks."""
    account = Resource("222222222222", "aws", "aws:account", "orders", ou("Production").id, {}, "org")
    eks = Resource(EKS, "aws", "eks:cluster", "orders", account.id, {"team": "orders"}, "org")
    commit(tmp_path, "aws", organization(account, eks))
    config = scan_cluster(tmp_path, cluster, EKS)

    shown = cli(config, "get", DEPLOYMENT)
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{DEPLOYMENT}: production"
    rows = lines[lines.index("  path (the target first, then each container above it):") + 1:]
    assert [" ".join(row.split()) for row in rows] == [
        "k8s:deployments api no signal",
        "k8s:namespaces orders no signal",
        "k8s:cluster orders-eks no signal",
        "eks:cluster orders no signal",
        "aws:account orders (222222222222) no signal",
        "aws:ou Production production: its name (/Root/Production)",
        "aws:root Root no signal",
    ]

    body = json.loads(cli(config, "get", DEPLOYMENT, "--json").stdout)
    assert [(n["kind"], n["environment"]) for n in body["path"]] == [
        ("k8s:deployments", None), ("k8s:namespaces", None), ("k8s:cluster", None), ("eks:cluster", None),
        ("aws:account", None), ("aws:ou", "production"), ("aws:root", None)]
    assert body["path"][5]["signals"] == [{"signal": "tag", "environment": "production", "source": ou("Production").id,
                                           "detail": "aws:ou /Root/Production"}]
    # the existing fields are as they were: the path is added, nothing else changes
    assert body["evidence"] == [{"signal": "inherited", "environment": "production", "source": ou("Production").id,
                                 "detail": "aws:ou /Root/Production"}]


def test_an_override_hides_the_containers_above_it_in_the_path(tmp_path: Path, cluster: FakeCluster) -> None:
    account = Resource("222222222222", "aws", "aws:account", "orders", ou("Production").id, {}, "org")
    commit(tmp_path, "aws", organization(account, Resource(EKS, "aws", "eks:cluster", "orders", account.id)))
    config = scan_cluster(tmp_path, cluster, EKS)
    made = cli(config, "override", "set", "k8s://orders-eks/namespaces/orders", "sandbox", "--reason",
               "load test namespace", "--by", "sre")
    assert made.exit_code == 0, made.output
    body = json.loads(cli(config, "get", DEPLOYMENT, "--json").stdout)
    assert body["environment"] == "sandbox"
    assert [(n["kind"], n["hidden"]) for n in body["path"]][:3] == [
        ("k8s:deployments", False), ("k8s:namespaces", False), ("k8s:cluster", True)]
    assert body["path"][5]["hidden"] is True  # the Production OU no longer counts
    shown = cli(config, "get", DEPLOYMENT).stdout
    assert "production: its name (/Root/Production) - not counted: an override below hides it" in shown


def test_the_moto_estate_chain_shows_each_containers_own_tag(
        moto_url: str, tmp_path: Path, cluster: FakeCluster) -> None:
    """The real AWS scan of the moto organization, then the cluster whose parent is its EKS cluster."""
    info = fresh_estate(moto_url)
    eks_arn = info.arns["orders-prod/orders"]
    k8s = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "parent": eks_arn}
    config = write_config(tmp_path, sources=[info.source(regions=["us-east-1"]), k8s])
    assert cli(config, "scan").exit_code == 0
    body = json.loads(cli(config, "get", DEPLOYMENT, "--json").stdout)
    kinds = [n["kind"] for n in body["path"]]
    assert kinds == ["k8s:deployments", "k8s:namespaces", "k8s:cluster", "eks:cluster", "aws:account", "aws:ou",
                     "aws:root"]
    by_kind = {n["kind"]: n for n in body["path"]}
    assert [s["detail"] for s in by_kind["eks:cluster"]["signals"]] == ["tag env=prod on eks:cluster orders"]
    assert by_kind["aws:account"]["environment"] == "production"
    shown = cli(config, "get", DEPLOYMENT).stdout
    assert "eks:cluster orders" in shown and "production: tag env=prod\n" in shown


def test_the_http_api_explains_only_when_asked(estate: Path) -> None:
    from envlabel.config import load_config
    from envlabel.service.daemon.server import BackgroundServer

    config = load_config(str(estate))
    store = open_store(config.store)
    with BackgroundServer(config, store) as server:
        def label(query: str) -> dict[str, Any]:
            with urllib.request.urlopen(f"{server.url}/v1/label?{query}", timeout=10) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer

        plain = label(f"target={PROD_DB}")
        explained = label(f"target={PROD_DB}&explain=true")
    store.close()
    assert "path" not in plain
    assert [n["id"] for n in explained["path"]][:2] == [PROD_DB, "222222222222"]
    assert {k: v for k, v in explained.items() if k != "path"} == plain


# -- item 6: list aligns and names ------------------------------------------------------------------------------


def test_list_aligns_long_kinds_and_shows_human_names(estate: Path, tmp_path: Path) -> None:
    long_kind = Resource("arn:aws:elasticloadbalancing:us-east-1:222222222222:targetgroup/orders/abc", "aws",
                         "elasticloadbalancing:targetgroup-with-a-long-kind", "orders-tg", "222222222222", {}, "org")
    commit(tmp_path, "extra", [long_kind])
    lines = cli(estate, "list").stdout.splitlines()
    header, rows = lines[0], lines[1:-1]
    assert header.split() == ["ENVIRONMENT", "KIND", "NAME", "TARGET"]
    column = header.index("TARGET")
    assert all(row[column - 2:column] == "  " and row[column] != " " for row in rows)
    account_row = next(row for row in rows if row[column:].startswith("222222222222"))
    assert account_row.split()[:4] == ["production", "aws:account", "orders", "222222222222"]
    assert any(row.split()[1] == long_kind.kind for row in rows)
    assert lines[-1].startswith(f"{len(rows)} resource(s): ")


def test_list_wide_names_the_container_each_resource_is_in(estate: Path) -> None:
    lines = cli(estate, "list", "--wide").stdout.splitlines()
    assert lines[0].split() == ["ENVIRONMENT", "KIND", "NAME", "TARGET", "DECIDED_BY", "OBSERVED", "IN"]
    db = next(line for line in lines if f" {PROD_DB} " in line)
    assert db.split()[4] == "inherited" and db.endswith("orders (222222222222)")
    account = next(line for line in lines if " 222222222222 " in line)
    assert account.endswith(f"/Root/Production ({ORG}:ou/o-test/ou-production)")


def test_list_json_is_as_before(estate: Path) -> None:
    rows = json.loads(cli(estate, "list", "--json").stdout)
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(
        ["target", "found", "environment", "authoritative", "decided_by", "conflict", "stale", "observed_at",
         "provider", "kind", "name", "parent", "id", "evidence", "facts"]))}


# -- item 7: the scan's real duration -------------------------------------------------------------------------


def test_the_scan_summary_times_the_discovery_not_only_the_commit(tmp_path: Path, cluster: FakeCluster) -> None:
    source = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig)}
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [source]})
    store: Store = open_store(config.store)
    spent: list[float] = []

    def scanner(src: Any) -> ScanResult:
        from envlabel.discovery import scanner_for

        clock = time.perf_counter()
        result = scanner_for(src).scan()
        spent.append(time.perf_counter() - clock)
        return result

    try:
        summary = run_source(config, store, config.sources[0], scan=scanner)
    finally:
        store.close()
    assert summary.discovery_seconds >= spent[0] > 0
    assert summary.total_seconds == summary.discovery_seconds + summary.seconds


def test_scan_prints_and_reports_the_whole_pass(tmp_path: Path, cluster: FakeCluster) -> None:
    source = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig)}
    config = write_config(tmp_path, sources=[source])
    [report] = json.loads(cli(config, "scan", "--json").stdout)
    assert report["scan_seconds"] > 0
    assert report["seconds"] == pytest.approx(report["scan_seconds"] + report["commit_seconds"], abs=0.002)
    text = cli(config, "scan").stdout
    assert " (scan " in text and ", commit " in text
