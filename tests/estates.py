"""Small hand-built estates and a CLI runner for the override, history and staleness tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from envlabel.model import Resource, ScanResult
from envlabel.service.cli import main

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ACCOUNT = "222222222222"
VPC = f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc/vpc-1"
DB = f"arn:aws:rds:us-east-1:{ACCOUNT}:db:orders"
BUCKET = "arn:aws:s3:::orders-exports"
SCOPE = f"{ACCOUNT}/us-east-1"
OU = "arn:aws:organizations::111111111111:ou/o-abc/ou-abcd-12345678"


def aws_estate(account_env: str = "staging", db_tags: dict[str, str] | None = None,
               with_db: bool = True) -> list[Resource]:
    """OU Production > account (tag env=account_env) > VPC > database; a bucket in the account."""
    ou = Resource(OU, "aws", "aws:ou", "Production", None, {}, "org", name_signal=True, path="/Root/Production")
    account = Resource(ACCOUNT, "aws", "aws:account", "orders", OU, {"env": account_env}, "org")
    vpc = Resource(VPC, "aws", "ec2:vpc", "main", ACCOUNT, {}, SCOPE)
    bucket = Resource(BUCKET, "aws", "s3:bucket", "orders-exports", ACCOUNT, {}, SCOPE)
    db = Resource(DB, "aws", "rds:db", "orders", VPC, db_tags or {}, SCOPE)
    return [ou, account, vpc, bucket, *([db] if with_db else [])]


def scan_of(resources: list[Resource], source: str = "aws") -> ScanResult:
    return ScanResult(source, resources, scopes=frozenset(r.scope for r in resources))


def write_config(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", **extra}))
    return path


def cli(config: Path, *args: str) -> Result:
    """The real ``envlabel`` command, in process (stdout and stderr kept apart)."""
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
