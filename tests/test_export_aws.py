"""``envlabel export aws-scp|aws-tag-policy``: policies generated from the labels of a real moto Organization.

The store is built by scanning tests/aws_estate.py's organization with the real AWS scanner, so every OU and
account id in the policies is one moto made; moto's Organizations API then accepts each policy and its
attachment, as AWS would.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from envlabel.config import AwsSource, config_from_dict
from envlabel.discovery.aws import AwsScanner
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.clock import utcnow
from envlabel.service.core.export import (
    EXPORTERS,
    MANIFEST,
    compare_kind,
    export_configured,
    export_kind,
    options_from_config,
)
from envlabel.service.core.export.aws_scp import MAX_ATTACHED, MAX_POLICY_CHARS, NOT_COVERED, minified_size
from envlabel.service.core.export.aws_vocabulary import actions_of_classes, iam_actions, tagging_actions
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.aws_estate import EstateInfo, fresh_estate
from tests.estates import cli

BREAK_GLASS = "arn:aws:iam::*:role/BreakGlass"
LABELER = "arn:aws:iam::123456789012:role/envlabel-labeler"
EXPORT = {"break_glass": [BREAK_GLASS], "labeler_role": LABELER}
_SID = re.compile(r"^[A-Za-z0-9]+$")


@pytest.fixture(scope="module")
def estate(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[EstateInfo, Path]:
    """The moto organization, scanned once into a SQLite store; returns it and the store's folder."""
    info = fresh_estate(moto_url)
    result = AwsScanner(AwsSource.model_validate(info.source())).scan()
    assert result.complete, result.errors
    folder = tmp_path_factory.mktemp("export")
    store = open_store(f"sqlite:///{folder / 'envlabel.db'}")
    now = utcnow()  # labels fresh, so a production label is authoritative rather than stale
    commit_scan(store, Taxonomy(), result, now, now)
    store.close()
    return info, folder


def make_config(estate: tuple[EstateInfo, Path], tmp_path: Path, **export: Any) -> Path:
    """A config file on a copy of the scanned store (a test may change its labels)."""
    info, folder = estate
    (tmp_path / "envlabel.db").write_bytes((folder / "envlabel.db").read_bytes())
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [info.source()],
                                    "export": {**EXPORT, **export}}))
    return path


def query_of(config_path: Path) -> Query:
    data = yaml.safe_load(config_path.read_text())
    config = config_from_dict(data)
    return Query(config, open_store(config.store))


def ou_id(info: EstateInfo, path: str) -> str:
    return info.ous[path].rsplit("/", 1)[-1]


def documents(artifacts: list[Any], *, notes: bool = True) -> dict[str, dict[str, Any]]:
    return {a.path: json.loads(a.content) for a in artifacts
            if not a.path.endswith(MANIFEST) and (notes or not a.path.endswith(NOT_COVERED))}


def check_iam_policy(content: dict[str, Any]) -> None:
    """The IAM policy grammar an SCP must follow, AWS's size limit, and real, exact IAM actions."""
    assert set(content) == {"Version", "Statement"} and content["Version"] == "2012-10-17"
    assert isinstance(content["Statement"], list) and content["Statement"]
    assert minified_size(content) <= MAX_POLICY_CHARS
    sids = [s["Sid"] for s in content["Statement"]]
    assert len(set(sids)) == len(sids)
    known = iam_actions()
    for statement in content["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert _SID.match(statement["Sid"]) and statement["Effect"] == "Deny" and statement["Resource"] == "*"
        assert isinstance(statement["Action"], list) and statement["Action"]
        for operator, keys in statement.get("Condition", {}).items():
            assert operator in {"ArnNotLike", "ForAnyValue:StringEqualsIgnoreCase"}
            assert set(keys) <= {"aws:PrincipalArn", "aws:TagKeys"}  # documented global condition keys only
        for pattern in statement["Action"]:
            # IAM's action grammar: a service prefix (or * for every service), a colon, a name with * and ?
            service, _, name = pattern.partition(":")
            assert re.fullmatch(r"\*|[a-z0-9-]+", service) and re.fullmatch(r"[A-Za-z0-9*?]*[A-Za-z0-9][A-Za-z0-9*?]*",
                                                                              name), pattern
            names = known if service == "*" else by_service().get(service, ())
            regex = re.compile(fnmatch.translate(pattern), re.IGNORECASE)
            assert any(regex.match(a) for a in names), f"{pattern} names no IAM action of the vocabulary"


@functools.cache
def by_service() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for action in iam_actions():
        found.setdefault(action.partition(":")[0], []).append(action)
    return found


def expand(patterns: list[str]) -> set[str]:
    """The IAM actions of the vocabulary the patterns match, as IAM matches them: the whole string, * and ?
    wildcards, ignoring case (independently of the exporter's own matcher)."""
    return set(_expand(tuple(sorted(patterns))))


@functools.cache
def _expand(patterns: tuple[str, ...]) -> frozenset[str]:
    # bucketed by service and the name's first letter, only to keep it fast: each bucket's regex is the patterns'
    grouped: dict[tuple[str, str], list[str]] = {}
    for pattern in patterns:
        service, _, name = pattern.partition(":")
        key = ("*" if "*" in service or "?" in service else service, "" if name[:1] in "*?" else name[:1].lower())
        grouped.setdefault(key, []).append(pattern)
    regexes = {key: re.compile("|".join(fnmatch.translate(p) for p in group), re.IGNORECASE)
               for key, group in grouped.items()}
    found = set()
    for action in iam_actions():
        service, _, name = action.partition(":")
        for key in ((service, ""), (service, name[:1].lower()), ("*", ""), ("*", name[:1].lower())):
            regex = regexes.get(key)
            if regex is not None and regex.match(action):
                found.add(action)
                break
    return frozenset(found)


def denied_sets(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    """What a target's policies deny outright and under the tag condition, expanded against the vocabulary."""
    denied: list[str] = []
    tagged: list[str] = []
    for policy in doc["policies"]:
        for statement in policy["content"]["Statement"]:
            (denied if statement["Sid"].startswith("EnvlabelDeny") else tagged).extend(statement["Action"])
    return expand(denied), expand(tagged)


def test_scps_protect_the_production_ous_and_accounts(estate: tuple[EstateInfo, Path], tmp_path: Path) -> None:
    info, _ = estate
    query = query_of(make_config(estate, tmp_path))
    files = documents(export_kind(query, "aws-scp", options_from_config(query.config)))
    targets = {doc["target"]: doc for path, doc in files.items() if not path.endswith(NOT_COVERED)}
    production_ou = ou_id(info, "/Root/Production")
    # the Production OU carries them (its EU child and both accounts are production): none of those again
    assert production_ou in targets and targets[production_ou]["kind"] == "aws:ou"
    assert ou_id(info, "/Root/Production/EU") not in targets
    assert info.accounts["orders-prod"] not in targets and info.accounts["payments-eu"] not in targets
    # the management account is tagged production, but no SCP applies to it: named as not covered
    assert info.accounts["management"] not in targets
    (not_covered,) = [doc["not_covered"] for path, doc in files.items() if path.endswith("not-covered.json")]
    assert [n["target"] for n in not_covered] == [info.accounts["management"]]
    # the account with no signal at all is decided as production
    legacy = targets[info.accounts["legacy-7"]]
    assert legacy["environment"] == "production" and "most restrictive" in legacy["evidence"][0]
    # staging and sandbox are not protected by default
    for name in ("orders-staging", "dev-playground"):
        assert info.accounts[name] not in targets
    assert ou_id(info, "/Root/Sandbox") not in targets and ou_id(info, "/Root/Staging") not in targets
    for doc in targets.values():
        assert doc["policy_type"] == "SERVICE_CONTROL_POLICY" and doc["policies"]


def test_the_policies_deny_the_delete_class_and_environment_tag_changes(
        estate: tuple[EstateInfo, Path], tmp_path: Path) -> None:
    """Production's: exactly the delete class, never a modify, read or create action; every tagging action under
    the environment-key condition; and all of it fits beside FullAWSAccess in AWS's five SCPs per target."""
    query = query_of(make_config(estate, tmp_path))
    doc = next(iter(documents(EXPORTERS["aws-scp"](query, options_from_config(query.config)), notes=False).values()))
    assert doc["environment"] == "production" and "warning" not in doc
    assert len(doc["policies"]) <= MAX_ATTACHED - 1
    tagging = tagging_actions()
    for policy in doc["policies"]:
        check_iam_policy(policy["content"])
        for statement in policy["content"]["Statement"]:
            if statement["Sid"].startswith("EnvlabelDeny"):
                assert statement["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [BREAK_GLASS]}}
            else:
                assert statement["Condition"]["ArnNotLike"] == {"aws:PrincipalArn": [LABELER]}
                assert statement["Condition"]["ForAnyValue:StringEqualsIgnoreCase"]["aws:TagKeys"] == \
                    list(query.config.tag_keys)
    denied, tag_denied = denied_sets(doc)
    deletes = actions_of_classes({"delete"})
    assert denied == deletes, (sorted(denied - deletes)[:5], sorted(deletes - denied)[:5])
    assert "rds:DeleteDBInstance" in denied and "ec2:TerminateInstances" in denied
    assert "ec2:DeleteTags" not in denied and "ec2:StopInstances" not in denied  # modify: approval, not an SCP
    # wider than the tagging actions only by actions that name tags (reading them: never denied, their requests
    # carry no aws:TagKeys)
    assert tag_denied >= tagging and {"ec2:CreateTags", "tag:TagResources", "tag:UntagResources"} <= tag_denied
    assert all("tag" in a.partition(":")[2].lower() for a in tag_denied - tagging)


@pytest.mark.parametrize(("export", "classes"), [
    ({}, {"delete"}),
    ({"environments": ["production", "staging"]}, {"delete"}),
    ({"environments": ["production", "staging"], "include_modify": True}, {"delete", "modify"}),
], ids=["production", "staging", "include_modify"])
def test_every_target_attaches_beside_full_aws_access_and_denies_exactly_its_classes(
        estate: tuple[EstateInfo, Path], tmp_path: Path, export: dict[str, Any], classes: set[str]) -> None:
    """AWS attaches at most five SCPs to a target (FullAWSAccess usually one of them), each at most 5,120
    characters minified; expanded against the vocabulary, the deny statements name exactly the classes."""
    query = query_of(make_config(estate, tmp_path, **export))
    files = documents(export_kind(query, "aws-scp", options_from_config(query.config)), notes=False)
    environments = {doc["environment"] for doc in files.values()}
    assert environments == set(export.get("environments", ["production"]))
    wanted = actions_of_classes(classes)
    checked: set[str] = set()
    for doc in files.values():
        assert len(doc["policies"]) <= MAX_ATTACHED - 1 and "warning" not in doc
        for policy in doc["policies"]:
            assert minified_size(policy["content"]) <= MAX_POLICY_CHARS
            if json.dumps(policy["content"]) not in checked:  # every target of a run shares the same policies
                check_iam_policy(policy["content"])
                checked.add(json.dumps(policy["content"]))
        denied, tagged = denied_sets(doc)
        assert denied == wanted, (sorted(denied - wanted)[:5], sorted(wanted - denied)[:5])
        assert tagged >= tagging_actions()


def test_a_set_that_cannot_attach_beside_full_aws_access_says_so(estate: tuple[EstateInfo, Path],
                                                                  tmp_path: Path) -> None:
    """Each break-glass ARN is repeated in every deny statement: a long list can push the set past four
    policies, and then every file says what to do rather than leaving the attachment to fail."""
    many = [f"arn:aws:iam::{n:012d}:role/BreakGlassOperatorForTheProductionEstate" for n in range(40)]
    query = query_of(make_config(estate, tmp_path, break_glass=many))
    files = documents(export_kind(query, "aws-scp", options_from_config(query.config)), notes=False)
    for doc in files.values():
        assert len(doc["policies"]) > MAX_ATTACHED - 1
        assert doc["warning"].startswith(f"{len(doc['policies'])} policies: AWS attaches at most 5 SCPs")
        assert "shorten export.break_glass" in doc["warning"]
        for policy in doc["policies"]:
            assert minified_size(policy["content"]) <= MAX_POLICY_CHARS


@pytest.mark.parametrize("export", [{}, {"environments": ["production", "staging"], "include_modify": True}],
                         ids=["production", "include_modify"])
def test_moto_organizations_accepts_and_attaches_every_policy(estate: tuple[EstateInfo, Path], tmp_path: Path,
                                                              moto_url: str, export: dict[str, Any]) -> None:
    info, _ = estate
    query = query_of(make_config(estate, tmp_path, **export))
    options = options_from_config(query.config)
    org = boto3.client("organizations", region_name="us-east-1", endpoint_url=moto_url)
    root = info.root.rsplit("/", 1)[-1]
    for policy_type in ("SERVICE_CONTROL_POLICY", "TAG_POLICY"):
        with contextlib.suppress(org.exceptions.PolicyTypeAlreadyEnabledException):
            org.enable_policy_type(RootId=root, PolicyType=policy_type)
    # the moto organization is the module's: a policy an earlier case created is reused, not created again
    existing = {p["Name"]: p["Id"] for t in ("SERVICE_CONTROL_POLICY", "TAG_POLICY")
                for p in org.list_policies(Filter=t)["Policies"]}
    created: dict[str, str] = {}
    targets: dict[str, set[str]] = {}
    for kind in ("aws-scp", "aws-tag-policy"):
        for path, doc in documents(export_kind(query, kind, options), notes=False).items():
            assert doc["target"], path
            for policy in doc["policies"]:
                if policy["name"] not in created and policy["name"] in existing:
                    created[policy["name"]] = existing[policy["name"]]
                if policy["name"] not in created:  # the same policy serves every target of a kind
                    answer = org.create_policy(
                        Content=json.dumps(policy["content"], separators=(",", ":")), Name=policy["name"],
                        Description=policy["description"], Type=doc["policy_type"])
                    created[policy["name"]] = answer["Policy"]["PolicySummary"]["Id"]
                with contextlib.suppress(org.exceptions.DuplicatePolicyAttachmentException):
                    org.attach_policy(PolicyId=created[policy["name"]], TargetId=doc["target"])
                targets.setdefault(doc["target"], set()).add(policy["name"])
    for target, names in targets.items():
        attached = {p["Name"] for p in org.list_policies_for_target(
            TargetId=target, Filter="SERVICE_CONTROL_POLICY")["Policies"]}
        assert names <= attached | {"envlabel-environment-tags"}
        assert len({n for n in names if n != "envlabel-environment-tags"}) <= MAX_ATTACHED - 1
    production = ou_id(info, "/Root/Production")
    attached = org.list_policies_for_target(TargetId=production, Filter="SERVICE_CONTROL_POLICY")["Policies"]
    assert {p["Name"] for p in attached} >= {n for n in created if n.startswith("envlabel-delete")}
    tag = org.list_policies_for_target(TargetId=root, Filter="TAG_POLICY")["Policies"]
    assert [p["Name"] for p in tag] == ["envlabel-environment-tags"]


def test_the_tag_policy_enforces_the_canonical_values(estate: tuple[EstateInfo, Path], tmp_path: Path) -> None:
    info, _ = estate
    query = query_of(make_config(estate, tmp_path, enforced_for=["ec2:instance"]))
    artifacts = export_kind(query, "aws-tag-policy", options_from_config(query.config))
    (doc,) = documents(artifacts).values()
    root = info.root.rsplit("/", 1)[-1]
    assert doc["target"] == root and artifacts[0].attaches_to == (root,)
    tags = doc["policies"][0]["content"]["tags"]
    assert set(tags) == {"environment", "env", "stage", "deployment.environment.name"}
    for key, rule in tags.items():
        assert rule["tag_key"] == {"@@assign": key}
        assert rule["tag_value"] == {"@@assign": ["production", "staging", "sandbox"]}
        assert rule["enforced_for"] == {"@@assign": ["ec2:instance"]}


def test_export_check_is_a_drift_gate(estate: tuple[EstateInfo, Path], tmp_path: Path) -> None:
    info, _ = estate
    config = make_config(estate, tmp_path)
    out = tmp_path / "policies"
    written = cli(config, "export", "aws-scp", "aws-tag-policy", "--out", str(out))
    assert written.exit_code == 0, written.stderr
    manifest = json.loads((out / "aws-scp" / MANIFEST).read_text())
    production = ou_id(info, "/Root/Production")
    assert {"path": f"{production}.json", "attaches_to": [production]} in manifest["files"]
    clean = cli(config, "export", "aws-scp", "aws-tag-policy", "--out", str(out), "--check")
    assert clean.exit_code == 0 and "matches the labels" in clean.stdout

    # hand edits, a stray file and a deleted one are all drift
    (out / "aws-scp" / f"{production}.json").write_text("{}")
    (out / "aws-scp" / "stray.json").write_text("{}")
    (out / "aws-tag-policy" / MANIFEST).unlink()
    drift = cli(config, "export", "aws-scp", "aws-tag-policy", "--out", str(out), "--check")
    assert drift.exit_code == 1
    assert f"changed: aws-scp/{production}.json" in drift.stdout
    assert "extra: aws-scp/stray.json" in drift.stdout and "missing: aws-tag-policy/manifest.json" in drift.stdout
    assert "no longer match the labels" in drift.stderr

    # rewriting replaces the folder whole: the stray file is gone and the gate is clean again
    assert cli(config, "export", "all", "--out", str(out)).exit_code == 0
    assert not (out / "aws-scp" / "stray.json").exists()
    assert cli(config, "export", "all", "--out", str(out), "--check").exit_code == 0

    # a label change is drift: the sandbox account made production needs its own SCPs now
    sandbox = info.accounts["dev-playground"]
    assert cli(config, "override", "set", sandbox, "production", "--reason", "holds customer data",
               "--by", "alice").exit_code == 0
    relabeled = cli(config, "export", "aws-scp", "--out", str(out), "--check")
    assert relabeled.exit_code == 1 and f"missing: aws-scp/{sandbox}.json" in relabeled.stdout


def test_export_refuses_bad_input_with_what_to_do(estate: tuple[EstateInfo, Path], tmp_path: Path) -> None:
    config = make_config(estate, tmp_path, environments=["prod"])
    answer = cli(config, "export", "aws-scp", "--out", str(tmp_path / "out"))
    assert answer.exit_code == 2 and "export.environments" in answer.stderr and "production" in answer.stderr
    unknown = cli(make_config(estate, tmp_path), "export", "azure-policy", "--out", str(tmp_path / "out"))
    assert unknown.exit_code == 2 and "aws-scp" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"export": {"break_glass": ["BreakGlass"]}}))
    refused = cli(bad, "export", "aws-scp", "--out", str(tmp_path / "out"))
    assert refused.exit_code == 2 and "export.break_glass" in refused.stderr


def test_the_daemon_rewrites_the_directory_after_label_changes(estate: tuple[EstateInfo, Path],
                                                               tmp_path: Path) -> None:
    info, _ = estate
    out = tmp_path / "synced"
    config = make_config(estate, tmp_path, directory=str(out), kinds=["aws-scp", "aws-tag-policy"])
    query = query_of(config)
    assert export_configured(query) == ["aws-scp", "aws-tag-policy"]
    assert compare_kind(out, "aws-scp", export_kind(query, "aws-scp", options_from_config(query.config))) == []
    sandbox = info.accounts["dev-playground"]
    assert not (out / "aws-scp" / f"{sandbox}.json").exists()
    # an override that relabels rewrites them at once, without waiting for a scan
    assert cli(config, "override", "set", sandbox, "production", "--reason", "holds customer data",
               "--by", "alice").exit_code == 0
    assert json.loads((out / "aws-scp" / f"{sandbox}.json").read_text())["environment"] == "production"
    assert export_configured(query_of(config)) == ["aws-scp", "aws-tag-policy"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    # not configured: the daemon writes nothing
    (tmp_path / "plain").mkdir()
    assert export_configured(query_of(make_config(estate, tmp_path / "plain"))) == []
