"""Severity means risk (issue 18, item 2): the table in docs/audit.md, row by row, over a real store.

The table is read from the document, and each of its rows names a resource of one estate built to show it; the
estate is committed through the real scan pipeline into a real SQLite file and audited. A row without a resource,
or a finding whose (kind, severity) the table does not list, fails the test: the document and the code cannot drift.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Override, Resource, ScanResult
from envlabel.service.core.audit import findings
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store

DOC = Path(__file__).resolve().parent.parent / "docs" / "audit.md"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
TAX = Taxonomy()
PROD, STAGING, SANDBOX, BARE, UNREAD = "100000000001", "100000000002", "100000000003", "100000000004", "100000000005"


def documented() -> set[tuple[str, str]]:
    """The (kind, severity) rows of the table under "## Severity" in docs/audit.md."""
    text = DOC.read_text()
    section = text[text.index("## Severity"):text.index("\n## ", text.index("## Severity") + 1)]
    rows = set(re.findall(r"^\| `([a-z-]+)` \| (high|medium|low) \|", section, flags=re.M))
    assert rows, "docs/audit.md has no severity table under '## Severity'"
    return rows


def account(number: str, name: str, tags: dict[str, str] | None = None) -> Resource:
    return Resource(number, "aws", "aws:account", name, None, tags or {}, "org")


def inside(parent: str, kind: str, name: str, tags: dict[str, str] | None = None,
           facts: dict[str, Any] | None = None) -> Resource:
    service, _, rest = kind.partition(":")
    rid = f"arn:aws:{service}:us-east-1:{parent}:{rest}/{name}"
    return Resource(rid, "aws", kind, name, parent, tags or {}, f"{parent}/us-east-1", region="us-east-1",
                    facts=facts or {})


def estate() -> tuple[list[Resource], dict[tuple[str, str], str]]:
    """Every row of the table as one resource: the resources, and (kind, severity) -> the target showing it."""
    prod = account(PROD, "shop", {"env": "prd"})  # a spelling on production: low
    staging = account(STAGING, "shop-stg", {"Environment": "staging"})
    sandbox = account(SANDBOX, "lab", {"Environment": "sandbox"})
    bare, unread = account(BARE, "legacy"), account(UNREAD, "shared", {"Environment": "nonprod"})
    rows = {
        ("conflict", "high"): inside(PROD, "ec2:vpc", "vpc-1", {"Environment": "sandbox"}),
        ("conflict", "medium"): inside(STAGING, "ec2:vpc", "vpc-2", {"Environment": "sandbox"}),
        ("ambiguous", "high"): inside(PROD, "rds:db", "orders", {"Environment": "dev", "env": "prod"}),
        ("ambiguous", "medium"): inside(STAGING, "rds:db", "orders", {"Environment": "dev", "env": "staging"}),
        ("unrecognized", "medium"): inside(STAGING, "ec2:vpc", "vpc-3", {"Environment": "misc"}),
        ("name-mismatch", "high"): inside(PROD, "ec2:instance", "dev-scratch"),
        ("name-mismatch", "medium"): inside(SANDBOX, "rds:db", "orders-prod-copy"),
        ("name-mismatch", "low"): inside(STAGING, "ec2:instance", "qa-runner"),
        ("unrecoverable", "high"): inside(PROD, "rds:db", "ledger", facts={
            "deletion_protection": False, "backup_retention_days": 0, "latest_snapshot": None}),
    }
    targets = {key: r.id for key, r in rows.items()}
    targets |= {("unlabeled", "high"): BARE, ("unrecognized", "high"): UNREAD, ("non-canonical", "low"): PROD,
                ("stale", "high"): "old-prod", ("stale", "medium"): "old-lab"}
    return [prod, staging, sandbox, bare, unread, *rows.values()], targets


def stale_scans() -> list[tuple[str, Resource]]:
    """Two sources whose last complete scan is three days old: one holding production, one only sandbox."""
    return [(source, Resource(number, "aws", "aws:account", source, None, {"Environment": environment}, source))
            for source, number, environment in (("old-prod", "100000000011", "production"),
                                                ("old-lab", "100000000012", "sandbox"))]


CONFIG = {"sources": [{"name": "aws", "type": "aws"}, {"name": "old-prod", "type": "aws"},
                      {"name": "old-lab", "type": "aws"}]}


@pytest.fixture
def query(tmp_path: Path) -> Query:
    url = f"sqlite:///{tmp_path / 'envlabel.db'}"
    store = open_store(url)
    resources, _ = estate()
    commit_scan(store, TAX, ScanResult("aws", resources, scopes=frozenset(r.scope for r in resources)), T0, T0)
    old = T0 - timedelta(days=3)
    for source, resource in stale_scans():
        commit_scan(store, TAX, ScanResult(source, [resource], scopes=frozenset({resource.scope})), old, old)
    return Query(config_from_dict({**CONFIG, "store": url}), store)


def test_every_row_of_the_table_is_what_the_audit_says(query: Query) -> None:
    rows = findings(query, now=NOW)
    _, targets = estate()
    assert set(targets) == documented(), "a row of docs/audit.md's severity table has no example here, or the " \
                                         "other way round"
    for (kind, severity), target in sorted(targets.items()):
        got = {r["severity"] for r in rows if r["target"] == target and r["kind"] == kind}
        assert got == {severity}, (kind, severity, target, got)
    undocumented = {(r["kind"], r["severity"]) for r in rows} - documented()
    assert not undocumented, f"findings whose severity docs/audit.md does not list: {undocumented}"


def test_an_override_decides_which_side_of_a_conflict_is_production(query: Query) -> None:
    vpc = inside(SANDBOX, "ec2:vpc", "vpc-9", {"Environment": "production"})
    commit_scan(query.store, TAX, ScanResult("aws", [*estate()[0], vpc], scopes=frozenset({f"{SANDBOX}/us-east-1",
                                                                                          "org"})), NOW, NOW)
    with query.store.transaction() as tx:  # a person decided it is staging; its tag still says production
        tx.set_override(Override(vpc.id, "staging", "moved to staging", "alice", T0))
    [row] = [r for r in findings(query, now=NOW) if r["target"] == vpc.id]
    assert (row["kind"], row["environment"], row["severity"]) == ("conflict", "staging", "medium")


def envlabel(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "envlabel")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False, timeout=60)


def test_fail_on_high_passes_on_spellings_and_fails_on_an_unknown_target(tmp_path: Path) -> None:
    scanned = utcnow()  # the CLI audits as of now: a scan of T0 would be stale by now
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    config = tmp_path / "envlabel.yaml"
    config.write_text(json.dumps({"store": url, "sources": [{"name": "aws", "type": "aws"}]}))
    store = open_store(url)
    spelled = [account(PROD, "shop", {"env": "prd"}), inside(PROD, "rds:db", "orders", {"Environment": "Prod-EU"})]
    commit_scan(store, TAX, ScanResult("aws", spelled, scopes=frozenset({"org", f"{PROD}/us-east-1"})), scanned,
                scanned)
    gate = envlabel("audit", "--config", str(config), "--format", "json", "--fail-on", "high")
    assert gate.returncode == 0, gate.stderr  # production, spelled two other ways: cosmetics, not a CI failure
    assert {(r["kind"], r["severity"]) for r in json.loads(gate.stdout)} == {("non-canonical", "low")}
    later = scanned + timedelta(seconds=1)
    commit_scan(store, TAX, ScanResult("aws", [*spelled, account(BARE, "legacy")], scopes=frozenset({"org"})),
                later, later)
    store.close()
    gate = envlabel("audit", "--config", str(config), "--fail-on", "high")
    assert gate.returncode == 1 and f"unlabeled      production  {BARE}" in gate.stdout, gate.stdout
