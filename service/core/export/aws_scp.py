"""``envlabel export aws-scp``: Service Control Policies for the OUs and accounts labeled production.

For each OU or account whose label is one of the export environments (an ``unknown`` or stale label
counts as the most restrictive environment, as in every check), one file ``aws-scp/<OU or account id>.json``
holding the policies to attach to it: deny the delete class of the action vocabulary (and the modify class
with ``include_modify``) except for the break-glass principals, and deny changing the environment tag keys
except by the labeler role. Policies are split to fit AWS's 5,120-character SCP limit (counted minified); the
actions are compressed into wildcards exact against the vocabulary, so the set is three policies and attaches
beside FullAWSAccess within AWS's five per target (a file whose set would not carries a ``warning``).
The management account is never given a file (AWS applies no SCP to it): ``aws-scp/not-covered.json``
names it when it is in an export environment.

An OU is given the policies only when everything in the organization below it is also in the export
environments; otherwise its qualifying children are given them one by one, so a sandbox account under a
production OU is never denied by the OU's policy. A target covered by an ancestor that carries them gets no
file of its own (the ancestor's policies already apply to it).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from envlabel.service.core.clock import utcnow
from envlabel.service.core.export import Artifact, ExportOptions, dump_json
from envlabel.service.core.export.aws_vocabulary import actions_of_classes, compress, iam_actions, tagging_actions
from envlabel.service.core.query import Query
from envlabel.store.records import StoredLabel

KIND = "aws-scp"
log = logging.getLogger("envlabel.export")
#: AWS's limit on one service control policy, counted without whitespace
MAX_POLICY_CHARS = 5120
#: AWS attaches at most 5 SCPs to one root, OU or account, one of them usually FullAWSAccess
MAX_ATTACHED = 5
ORG_KINDS = ("aws:root", "aws:ou", "aws:account")
_PAGE = 5000
#: the file naming the targets in the export environments that no SCP can protect
NOT_COVERED = "not-covered.json"


@dataclass(frozen=True)
class OrgNode:
    """An OU, account or root of the organization as the labels have it."""

    id: str
    kind: str
    name: str
    parent: str | None
    #: the environment a check decides it as: its label when authoritative, else the most restrictive
    environment: str
    evidence: tuple[str, ...]

    @property
    def attach_id(self) -> str:
        """The id Organizations attaches policies to: ``ou-...`` of an OU's ARN, an account's 12 digits."""
        return self.id.rsplit("/", 1)[-1]


def export(query: Query, options: ExportOptions) -> list[Artifact]:
    """One file per OU or account to protect, each naming the policies to attach to it."""
    nodes = read_organization(query)
    policies = build_policies(options)
    artifacts = []
    management = management_accounts(nodes)
    uncovered = [{"target": n.attach_id, "name": n.name, "environment": n.environment,
                  "reason": "the organization's management account: AWS applies no SCP to it; keep workloads "
                            "out of it and guard it with IAM policies"}
                 for n in nodes.values() if n.id in management and n.environment in options.environments]
    if uncovered:
        artifacts.append(Artifact(f"{KIND}/{NOT_COVERED}", dump_json({"not_covered": uncovered})))
    for node in select_targets(nodes, set(options.environments)):
        if node.id in management:
            continue
        document = {
            "target": node.attach_id, "target_id": node.id, "kind": node.kind, "name": node.name,
            "environment": node.environment, "evidence": list(node.evidence),
            "policy_type": "SERVICE_CONTROL_POLICY", "policies": policies,
        }
        if len(policies) > MAX_ATTACHED - 1:
            document["warning"] = (f"{len(policies)} policies: AWS attaches at most {MAX_ATTACHED} SCPs to one "
                                   "target, FullAWSAccess included; shorten export.break_glass, attach some to a "
                                   "parent OU that holds only protected accounts, or replace FullAWSAccess "
                                   "(see docs/export.md)")
            log.warning("aws-scp: %s (%s) needs %s", node.attach_id, node.name, document["warning"])
        artifacts.append(Artifact(f"{KIND}/{node.attach_id}.json", dump_json(document), (node.attach_id,)))
    return artifacts


def management_accounts(nodes: dict[str, OrgNode]) -> set[str]:
    """The management account of each stored organization: the account in its root's or OUs' ARNs."""
    return {n.id.split(":")[4] for n in nodes.values() if n.kind in ("aws:root", "aws:ou") and n.id.count(":") >= 5}


def read_organization(query: Query) -> dict[str, OrgNode]:
    """Every live root, OU and account in the store, with the environment a check decides it as."""
    strictest = query.config.environments[0]
    now = utcnow()
    nodes: dict[str, OrgNode] = {}
    for stored in _org_labels(query):
        record = query.answer(stored.resource.id, "aws", stored, now)
        environment = record["environment"] if record["authoritative"] else strictest
        evidence = tuple(f"{e['signal']}: {e['environment']} ({e['detail']})" for e in record["evidence"])
        if not record["authoritative"]:
            evidence = (f"label {record['environment']}{' (stale)' if record['stale'] else ''}: decided as "
                        f"{strictest}, the most restrictive environment", *evidence)
        nodes[stored.resource.id] = OrgNode(stored.resource.id, stored.resource.kind, stored.resource.name,
                                            stored.resource.parent, environment, evidence)
    return nodes


def _org_labels(query: Query) -> Iterator[StoredLabel]:
    after = ""
    while True:  # a page at a time: an estate of millions of resources never sits in memory at once
        page = query.store.list_labels(provider="aws", after=after, limit=_PAGE)
        yield from (s for s in page if s.resource.kind in ORG_KINDS)
        if len(page) < _PAGE:
            return
        after = page[-1].resource.id


def select_targets(nodes: dict[str, OrgNode], environments: set[str]) -> list[OrgNode]:
    """The highest OUs and accounts whose whole subtree is in ``environments`` (see the module docstring)."""
    children: dict[str, list[str]] = defaultdict(list)
    for node in nodes.values():
        if node.parent in nodes:
            children[node.parent].append(node.id)
    whole: dict[str, bool] = {}

    def is_whole(node_id: str) -> bool:
        if node_id not in whole:
            node = nodes[node_id]
            whole[node_id] = node.environment in environments and all(is_whole(c) for c in children[node_id])
        return whole[node_id]

    chosen: list[OrgNode] = []

    def visit(node_id: str) -> None:
        node = nodes[node_id]
        if node.kind != "aws:root" and is_whole(node_id):
            chosen.append(node)
            return
        if node.kind == "aws:account" and node.environment in environments:
            chosen.append(node)  # an account is the smallest unit an SCP attaches to
            return
        for child in sorted(children[node_id]):
            visit(child)

    for node_id in sorted(n.id for n in nodes.values() if n.parent not in nodes):
        visit(node_id)
    return sorted(chosen, key=lambda n: n.attach_id)


def build_policies(options: ExportOptions) -> list[dict[str, Any]]:
    """The SCPs a protected target gets: ``[{"name", "description", "content"}]``, each content within
    :data:`MAX_POLICY_CHARS` minified.

    The deny statement names exactly the delete class (with ``include_modify``, the delete and modify classes)
    of the vocabulary, in the patterns :func:`compress` finds: about 610 patterns, 11 KB (780, 10 KB with
    ``include_modify``), three policies with the tag statement, so they attach beside FullAWSAccess. A
    break-glass principal does what an approval allows."""
    classes = ("delete", "modify") if options.include_modify else ("delete",)
    deny: dict[str, Any] = {"Effect": "Deny", "Resource": "*"}
    if options.break_glass:
        deny["Condition"] = {"ArnNotLike": {"aws:PrincipalArn": list(options.break_glass)}}
    tags: dict[str, Any] = {"Effect": "Deny", "Resource": "*", "Condition": {
        # aws:TagKeys lists the keys a tagging request sets or removes; keys are matched ignoring case, as
        # envlabel reads them
        "ForAnyValue:StringEqualsIgnoreCase": {"aws:TagKeys": list(options.tag_keys)}}}
    if options.labeler_role:
        tags["Condition"]["ArnNotLike"] = {"aws:PrincipalArn": [options.labeler_role]}
    statements = [
        ("EnvlabelDeny" + "".join(c.title() for c in classes), deny, compress(actions_of_classes(classes))),
        ("EnvlabelProtectEnvironmentTags", tags, tag_patterns()),
    ]
    contents = pack_statements(statements)
    label = "-".join(classes)
    return [{"name": f"envlabel-{label}-{i}-of-{len(contents)}",
             "description": f"envlabel: deny {' and '.join(classes)} actions and environment tag changes "
                            f"({i}/{len(contents)})",
             "content": content} for i, content in enumerate(contents, 1)]


def tag_patterns() -> list[str]:
    """The tag statement's actions: the Tagging-level actions, compressed allowing a pattern to also match any
    action whose name contains ``tag`` (``ListTagsForResource``). The statement's condition (the request sets
    or removes an environment key, ``aws:TagKeys``) is never true for an action that only reads tags, so those
    are never denied: ~700 names (13 KB) become ~25 patterns (0.4 KB)."""
    names_tags = (a for a in iam_actions() if "tag" in a.partition(":")[2].lower())
    return compress(tagging_actions(), names_tags)


def pack_statements(statements: Sequence[tuple[str, dict[str, Any], list[str]]]) -> list[dict[str, Any]]:
    """Policy documents holding every statement's actions, each statement split across as few documents
    as fit :data:`MAX_POLICY_CHARS` minified; the documents fill in order."""
    documents: list[dict[str, Any]] = []
    current: dict[str, Any] = {"Version": "2012-10-17", "Statement": []}
    for sid, template, actions in statements:
        part = 0
        statement: dict[str, Any] | None = None
        for action in actions:
            if statement is not None:
                statement["Action"].append(action)
                if minified_size(current) <= MAX_POLICY_CHARS:
                    continue
                statement["Action"].pop()
            if current["Statement"] and (statement is not None or not _fits_new(current, sid, template, action)):
                documents.append(current)
                current = {"Version": "2012-10-17", "Statement": []}
            part += 1
            statement = {"Sid": f"{sid}{part}", **template, "Action": [action]}
            current["Statement"].append(statement)
            if minified_size(current) > MAX_POLICY_CHARS:
                raise ValueError(f"one statement for {action} is over {MAX_POLICY_CHARS} characters: shorten "
                                 "the break-glass and labeler principals or the tag keys")
    if current["Statement"]:
        documents.append(current)
    return documents


def _fits_new(current: dict[str, Any], sid: str, template: dict[str, Any], action: str) -> bool:
    trial = {**current, "Statement": [*current["Statement"], {"Sid": f"{sid}99", **template, "Action": [action]}]}
    return minified_size(trial) <= MAX_POLICY_CHARS


def minified_size(document: dict[str, Any]) -> int:
    """The size AWS counts: the JSON without whitespace."""
    return len(json.dumps(document, separators=(",", ":")))
