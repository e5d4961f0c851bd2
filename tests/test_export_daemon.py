"""The daemon's opt-in export (config ``export.directory``): a scan that changes a label rewrites the directory.

The real daemon scans a real moto Organization with the real AWS scanner into a SQLite store; the label change
is a tag changed in moto, as a person would change it in AWS, and the next scan finds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from envlabel.config import config_from_dict
from envlabel.service.core.export import MANIFEST, export_configured
from envlabel.service.core.query import Query
from envlabel.service.daemon.metrics import Metrics, ScanMetrics
from envlabel.service.daemon.scheduler import Daemon
from envlabel.store import open_store
from tests.aws_estate import EstateInfo, fresh_estate

BREAK_GLASS = "arn:aws:iam::*:role/BreakGlass"


@pytest.fixture
def estate(moto_url: str) -> EstateInfo:
    return fresh_estate(moto_url)


def files_of(folder: Path) -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.iterdir())}


def test_a_scan_that_changes_a_label_rewrites_the_export_directory(estate: EstateInfo, tmp_path: Path,
                                                                   moto_url: str) -> None:
    out = tmp_path / "policies"
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [estate.source()],
                               "export": {"directory": str(out), "kinds": ["aws-scp"],
                                          "break_glass": [BREAK_GLASS]}})
    store = open_store(config.store)
    try:
        daemon = Daemon(config, store, ScanMetrics(Metrics().registry), watch=False)
        first = daemon.run_scan("aws")  # a first scan labels everything: a change, so the directory is written
        assert first is not None and first.complete and first.label_changes
        folder = out / "aws-scp"
        sandbox = estate.accounts["dev-playground"]
        before = files_of(folder)
        assert before and f"{sandbox}.json" not in before
        written = folder.stat().st_ino  # each rewrite swaps in a new folder

        # a scan that changes no label leaves the directory alone
        same = daemon.run_scan("aws")
        assert same is not None and not same.label_changes and not same.removed
        assert folder.stat().st_ino == written and files_of(folder) == before

        # the sandbox account is retagged production in AWS: the next scan relabels it and rewrites the folder
        org = boto3.client("organizations", region_name="us-east-1", endpoint_url=moto_url)
        org.tag_resource(ResourceId=sandbox, Tags=[{"Key": "ENV", "Value": "production"}])
        changed = daemon.run_scan("aws")
        assert changed is not None and changed.label_changes
        after = files_of(folder)
        assert after[f"{sandbox}.json"]["environment"] == "production"
        assert after[f"{sandbox}.json"]["policies"] == before[next(n for n in before if n not in
                                                                   (MANIFEST, "not-covered.json"))]["policies"]
        assert {"path": f"{sandbox}.json", "attaches_to": [sandbox]} in after[MANIFEST]["files"]
        assert folder.stat().st_ino != written

        # and back: retagged dev, the next scan takes its file away again
        org.tag_resource(ResourceId=sandbox, Tags=[{"Key": "ENV", "Value": "dev"}])
        assert daemon.run_scan("aws") is not None
        assert files_of(folder) == before
        # what the daemon wrote is what the labels give now (the CI drift gate would pass)
        assert export_configured(Query(config, store)) == ["aws-scp"] and files_of(folder) == before
    finally:
        daemon.stop(timeout=10)
        store.close()
