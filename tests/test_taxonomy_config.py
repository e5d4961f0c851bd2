"""A configurable taxonomy: more environments, synonyms, tag keys, explicit maps, and where settings come from.

Every rejection goes through the real ``envlabel validate`` as a subprocess: exit 2 (usage) and the field path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from envlabel.config import load_config
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.estates import ACCOUNT, DB, T0, VPC, scan_of, write_config

ENVLABEL = str(Path(sys.executable).parent / "envlabel")
FIVE = ["production", "dr", "staging", "development", "sandbox"]
ROW = {"read": "allow", "create": "require_approval", "modify": "require_approval", "delete": "deny"}
FIVE_CONFIG: dict[str, Any] = {
    "environments": FIVE,
    "synonyms": {"dr": ["dr", "disaster-recovery", "failover"], "development": ["development", "dev", "devel"]},
    "name_tokens": {"dr": ["recovery"]},
    "policy": {"dr": ROW, "development": {**ROW, "create": "allow", "modify": "allow",
                                          "delete": "require_approval"}},
    "approvers": {"dr": ["sre-oncall"]},
    "sources": [{"name": "org", "type": "aws", "organization": True,
                 "ou_environments": {"ou-abcd-12345678": "dr"},
                 "account_environments": {ACCOUNT: "development"}}],
}


def validate(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")} | env
    return subprocess.run([ENVLABEL, "validate", "--config", str(path)], capture_output=True, text=True,
                          env=environ, cwd=path.parent, check=False, timeout=60)


def config_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def aws(**extra: Any) -> dict[str, Any]:
    return {"sources": [{"name": "org", "type": "aws", **extra}]}


@pytest.mark.parametrize("data, field, message", [
    ({"synonyms": {"production": ["prod", "live"], "staging": ["stg", "live"]}},
     "synonyms.staging", "'live' is also a synonym of 'production'"),
    ({"environments": ["production", "qa", "sandbox"], "synonyms": {"sandbox": ["sbx", "qa"]},
      "policy": {"qa": ROW}}, "synonyms.sandbox", "'qa' is the name of environment 'qa'"),
    ({"synonyms": {"prod": ["p"]}}, "synonyms.prod", "not one of the environments"),
    (aws(ou_environments={"ou-abcd-12345678": "prod"}), "sources.0.ou_environments.ou-abcd-12345678",
     "'prod' is not one of the environments"),
    (aws(account_environments={ACCOUNT: "dr"}), f"sources.0.account_environments.{ACCOUNT}",
     "'dr' is not one of the environments"),
    (aws(account_environments={"2222": "production"}), "sources.0.account_environments.2222",
     "'2222' is not an AWS account id: write its 12 digits, quoted"),
    ({"sources": [{"name": "c1", "type": "kubernetes", "environment": "live"}]}, "sources.0.environment",
     "'live' is not one of the environments"),
    ({"environments": ["production", "dr", "staging", "sandbox"]}, "policy",
     "no entry for environment 'dr'"),
    ({"policy": {"qa": ROW}}, "policy.qa", "not one of the environments"),
    ({"policy": {"production": {**ROW, "delete": "maybe"}}}, "policy.production.delete",
     "'allow', 'require_approval' or 'deny'"),
    ({"name_tokens": {"prod": ["p"]}}, "name_tokens.prod", "not one of the environments"),
    ({"approvers": {"prod": ["sre"]}}, "approvers.prod", "not one of the environments"),
    ({"environments": ["production", "sandbox", "production"]}, "environments", "listed twice"),
    ({"environments": ["production", "unknown"]}, "environments", "'unknown' is reserved"),
    ({"environments": []}, "environments", "at least 1 item"),
    ({"stale_after": "a day"}, "stale_after", "write it as 30s, 15m, 2h or 7d"),
    ({"stale_afer": "2h"}, "stale_afer", "unknown key"),
    ({"sources": [{"name": "org", "type": "aws"}, {"name": "org", "type": "aws"}]}, "sources",
     "name 'org' used twice"),
])
def test_validate_rejects_with_the_field_path(tmp_path: Path, data: dict[str, Any], field: str,
                                              message: str) -> None:
    result = validate(config_file(tmp_path, data))
    assert result.returncode == 2, result.stdout
    line = next((ln for ln in result.stderr.splitlines() if ln.strip().startswith(f"{field}:")), None)
    assert line is not None, result.stderr
    assert message in line


def test_five_environments_validate(tmp_path: Path) -> None:
    result = validate(config_file(tmp_path, FIVE_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "environments production, dr, staging, development, sandbox" in result.stdout


def test_five_environments_label_in_order(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, FIVE_CONFIG), environ={})
    taxonomy = Taxonomy.from_config(config)
    assert [taxonomy.normalize(v).environment for v in ("DR", "failover-eu", "dev", "Development", "sbx", "test",
                                                       "prod")] == [
        "dr", "dr", "development", "development", "sandbox", "sandbox", "production"]
    assert taxonomy.name_environments("orders-recovery-db") == {"dr"}
    # a described environment gets its row; the others keep the defaults
    assert config.policy["dr"] == ROW and config.policy["production"]["delete"] == "deny"
    assert config.policy["sandbox"]["delete"] == "allow"
    assert "dev" not in config.synonyms["sandbox"] and "development" not in config.synonyms["sandbox"]
    account = Resource(ACCOUNT, "aws", "aws:account", "orders", None, {}, "org", declared="development")
    vpc = Resource(VPC, "aws", "ec2:vpc", "main", ACCOUNT, {"stage": "DR"}, "s")
    db = Resource(DB, "aws", "rds:db", "orders", VPC, {"env": "devel"}, "s")
    label = Labeler(taxonomy, {ACCOUNT: account, VPC: vpc}, {}).label(db)
    # dr ranks between production and staging: it outranks development wherever it comes from
    assert (label.environment, label.decided_by, label.conflict) == ("dr", "inherited", True)


def test_default_synonyms_give_way_to_configured_environments(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, {"environments": ["production", "staging", "qa", "sandbox"],
                                                "policy": {"qa": ROW}}), environ={})
    taxonomy = Taxonomy.from_config(config)
    assert taxonomy.normalize("QA").environment == "qa"
    assert taxonomy.normalize("dev").environment == "sandbox"


def test_tag_keys_are_configurable(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, {"tag_keys": ["tier", "Environment"]}), environ={})
    taxonomy = Taxonomy.from_config(config)
    assert taxonomy.is_environment_key("TIER") and taxonomy.is_environment_key("environment")
    assert not taxonomy.is_environment_key("env")
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    db = Resource(DB, "aws", "rds:db", "orders", None, {"tier": "stg", "env": "prod"}, "s")
    commit_scan(store, taxonomy, scan_of([db]), T0, T0)
    assert Query(config, store).label(DB, now=T0)["environment"] == "staging"
    store.close()


def test_environment_variables_override_the_file_which_overrides_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./envlabel.yaml here: defaults only
    assert load_config(None, environ={}).stale_after == timedelta(hours=24)
    assert load_config(None, environ={"ENVLABEL_STALE_AFTER": "1h"}).stale_after == timedelta(hours=1)
    path = config_file(tmp_path, {"stale_after": "2h", "schedule": {"interval": "5m"},
                                  "tag_keys": ["environment"]})
    from_file = load_config(path, environ={})
    assert (from_file.stale_after, from_file.schedule.interval) == (timedelta(hours=2), timedelta(minutes=5))
    environ = {"ENVLABEL_STALE_AFTER": "30m", "ENVLABEL_SCHEDULE__JITTER": "1s",
               "ENVLABEL_ENVIRONMENTS": "[production, dr, staging, sandbox]",
               "ENVLABEL_POLICY__DR": "{read: allow, create: deny, modify: deny, delete: deny}"}
    merged = load_config(path, environ=environ)
    assert merged.stale_after == timedelta(minutes=30)
    # nested keys merge: the file's interval stays, the variable's jitter is added
    assert (merged.schedule.interval, merged.schedule.jitter) == (timedelta(minutes=5), timedelta(seconds=1))
    assert merged.environments == ["production", "dr", "staging", "sandbox"]
    assert merged.policy["dr"]["read"] == "allow" and merged.policy["production"]["delete"] == "deny"
    assert merged.tag_keys == ["environment"]


def test_precedence_through_the_real_cli(tmp_path: Path) -> None:
    path = config_file(tmp_path, {"environments": ["production", "sandbox"]})
    assert "environments production, sandbox," in validate(path).stdout
    overridden = validate(path, ENVLABEL_ENVIRONMENTS="[production, staging, sandbox]")
    assert "environments production, staging, sandbox," in overridden.stdout
    bad = validate(path, ENVLABEL_STALE_AFTER="forever")
    assert bad.returncode == 2 and "stale_after: 'forever' is not a duration" in bad.stderr
    # --config beats $ENVLABEL_CONFIG
    (tmp_path / "other").mkdir()
    other = config_file(tmp_path / "other", {})
    chosen = validate(path, ENVLABEL_CONFIG=str(other))
    assert "environments production, sandbox," in chosen.stdout


def test_store_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    assert load_config(write_config(tmp_path), environ={"ENVLABEL_STORE": url}).store == url
