"""Golden audit of the realistic moto Organization (tests/aws_estate.py), scanned by the real AWS scanner.

moto invents account, OU and resource ids, so the golden files name them by what they are
(``ACCOUNT[orders-prod]``, ``OU[/Root/Production]``, ``i-1``...). Regenerate after an intended change:
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_audit_moto.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from envlabel.config import AwsSource, config_from_dict
from envlabel.discovery.aws import AwsScanner
from envlabel.labelers.findings import KINDS, SEVERITIES
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.audit import findings, format_markdown
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.aws_estate import EstateInfo, fresh_estate
from tests.test_audit import NOW, T0, check_golden

_RANDOM_IDS = re.compile(r"\b(i|vpc|subnet|sg|o|r|ou-[0-9a-z]{4})-[0-9a-z]{4,32}\b")


def stable(text: str, estate: EstateInfo) -> str:
    """Replace the ids moto made up by names that stay the same from run to run."""
    for path, arn in sorted(estate.ous.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(arn, f"OU[{path}]").replace(arn.rsplit("/", 1)[-1], f"OU[{path}]")
    for name, account in estate.accounts.items():
        text = text.replace(account, f"ACCOUNT[{name}]")
    # numbering them would follow moto's random order; the region, account and name around them tell them apart
    return _RANDOM_IDS.sub(lambda m: m.group(1).split("-")[0] + "-*", text)


@pytest.fixture(scope="module")
def audited(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], EstateInfo]:
    estate = fresh_estate(moto_url)
    source = AwsSource.model_validate(estate.source())
    result = AwsScanner(source).scan()
    assert result.complete, result.errors
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('moto') / 'envlabel.db'}")
    commit_scan(store, Taxonomy(), result, T0, T0)
    query = Query(config_from_dict({"sources": [estate.source()]}), store)
    rows = json.loads(stable(json.dumps(findings(query, now=NOW)), estate))
    rows.sort(key=lambda r: (SEVERITIES.index(r["severity"]), KINDS.index(r["kind"]), r["target"], r["message"]))
    return rows, estate


def test_golden_audit_of_the_moto_organization(audited: tuple[list[dict[str, Any]], EstateInfo]) -> None:
    rows, _ = audited
    check_golden("audit-moto.json", json.dumps(rows, indent=2) + "\n")
    check_golden("audit-moto.md", format_markdown(rows, NOW))


def test_the_estate_mistakes_are_found_once_each(audited: tuple[list[dict[str, Any]], EstateInfo]) -> None:
    rows, _ = audited
    kinds = {(r["kind"], r["target"]) for r in rows}
    # the RDS tagged sandbox in the production account: one conflict on it, fixed to production
    conflict = [r for r in rows if r["kind"] == "conflict" and "orders-db" in r["target"]
                and "ACCOUNT[orders-prod]" in r["target"]]
    assert len(conflict) == 1 and conflict[0]["remediation"]["tags"] == {"Environment": "production"}
    # the account with no signal at all: one unlabeled finding on the account, covering what is in it
    legacy = [r for r in rows if r["kind"] == "unlabeled" and r["target"] == "ACCOUNT[legacy-7]"]
    assert len(legacy) == 1 and "resource(s) in it" in legacy[0]["message"]
    assert not [r for r in rows if r["kind"] == "unlabeled" and "ACCOUNT[legacy-7]:" in r["target"]]
    assert ("unrecognized", "ACCOUNT[shared-services]") in kinds  # Environment=nonprod
    assert ("non-canonical", "ACCOUNT[orders-prod]") in kinds  # env=prd
