"""The check's decision rule: may this action be done to the target this label describes? Pure.

The decision comes from ``config.policy[environment][class]``. The
environment decided *as* is the label's, except that a target with no
authoritative label (never seen, gone, ``unknown``, stale) is decided as the
most restrictive environment (``config.environments[0]``, production by
default). Every decision carries its reasons, citing the evidence.

What the action would cost on this target (``recovery``, :mod:`envlabel.labelers.recovery`) comes from the
label's facts and the call's parameters. A modify that destroys data (backups to zero, versioning suspended, a
lifecycle expiration) is decided as the delete class (``action_class`` says ``delete``), with that reason; a
delete-class action whose recovery is not ``true`` is decided by the row's ``irreversible`` key where the
policy has one (rule ``policy.ENV.irreversible``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from envlabel.actions import classify
from envlabel.config import IRREVERSIBLE, Config, format_duration
from envlabel.labelers.recovery import recovery
from envlabel.model import UNKNOWN
from envlabel.records import ActionClass, CheckRecord, Decision, LabelRecord, RecoveryRecord


def decide(config: Config, action: str, label: LabelRecord, *, decided_as: str | None = None,
           notes: Sequence[str] = (), parameters: Mapping[str, Any] | None = None,
           now: datetime | None = None, recovered: RecoveryRecord | None = None) -> CheckRecord:
    """The check JSON for ``action`` on the target described by ``label`` (the label JSON).

    ``decided_as`` replaces the environment the label gives (the caller found a stricter one, such as a
    production resource inside the target); ``notes`` say why, before the policy's reason. ``parameters`` are
    the call's (None: not given), which the recovery rules read (``SkipFinalSnapshot``, ``BackupRetentionPeriod``,
    ``propagationPolicy``...); ``now`` only words a snapshot's age. ``recovered``: the recovery decided already
    (a check decided again as another environment keeps the one its parameters gave)."""
    classification = classify(action)
    cost = recovered or recovery(classification.action_class, classification.understood_as, parameters,
                                 label.get("kind"), label.get("facts") or {}, now=now)
    action_class: ActionClass = "delete" if cost["destroys_data"] else classification.action_class
    environment, label_reasons = environment_for_decision(config, label)
    environment = decided_as or environment
    decision, policy_reason, rule = policy_decision(config, environment, action_class, cost)
    approvers = list(config.approvers.get(environment, [])) if decision == "require_approval" else []
    reasons = [classification.reason, *label_reasons, *notes, *recovery_reasons(classification.action_class, cost),
               policy_reason]
    if decision == "require_approval":
        reasons.append(f"ask {', '.join(approvers)} to approve" if approvers else
                       f"no approvers are configured for {environment} (config approvers.{environment}); "
                       "ask the owner of the target")
    return {
        "target": label["target"],
        "action": action,
        "action_class": action_class,
        "environment": environment,
        "decision": decision,
        "reversible": cost["reversible"] is True,
        "reasons": reasons,
        "approvers": approvers,
        "label": label,
        "understood_as": classification.understood_as,
        "rule": rule,
        "recovery": cost,
    }


def recovery_reasons(action_class: ActionClass, cost: RecoveryRecord) -> list[str]:
    """What the reasons say of the recovery: for the delete class and a data-destroying modify only (a read,
    create or settings change is undone by itself, and its reasons stay as they were)."""
    if action_class != "delete" and not cost["destroys_data"]:
        return []
    why = "; ".join(cost["why"])
    if cost["destroys_data"] and action_class != "delete":
        return [f"it destroys data, so it is decided as a delete: {why}"]
    if cost["reversible"] is True:
        return [f"recoverable: {why}; how: {cost['how']}"]
    verdict = "irreversible" if cost["reversible"] is False else "recovery unknown (decided as irreversible)"
    loses = f"; loses {cost['loses']}" if cost["loses"] else ""
    return [f"{verdict}: {why}{loses}"]


def environment_for_decision(config: Config, label: LabelRecord) -> tuple[str, list[str]]:
    """The environment the check decides as, and why; anything not authoritative is the most restrictive."""
    strictest = config.environments[0]
    if not label["found"]:
        seen = (f"is gone (not seen by the last complete scan) since {label['gone_at']}" if label.get("gone_at")
                else "has never been seen by a complete scan")
        return strictest, [f"{label['target']} {seen}; decided as {strictest} (fail closed)"]
    environment = label["environment"]
    if environment == UNKNOWN:
        return strictest, [f"{label['target']} has no environment signal (label unknown); decided as "
                           f"{strictest} (fail closed)"]
    if environment not in config.policy:
        return strictest, [f"label {environment} is not a configured environment; decided as {strictest} "
                           "(fail closed)"]
    reasons = [describe_label(label)]
    if label["stale"]:
        return strictest, [*reasons, f"the label is stale (observed {label['observed_at']}, older than "
                                     f"stale_after {format_duration(config.stale_after)}); decided as "
                                     f"{strictest} (fail closed)"]
    return environment, reasons


def describe_label(label: LabelRecord) -> str:
    """``label production decided by inherited: OU /Root/Production (arn...)``, plus any conflict."""
    environment, decided_by = label["environment"], label["decided_by"]
    evidence = label["evidence"]
    cited = next((e for e in evidence if e["signal"] == decided_by and e["environment"] == environment),
                 next((e for e in evidence if e["environment"] == environment), None))
    text = f"label {environment} decided by {decided_by}"
    if cited is not None:
        text += f": {cited['detail']} ({cited['source']})"
    if label["conflict"]:
        others = sorted({f"{e['signal']} {e['environment']} ({e['detail']})" for e in evidence
                         if e["environment"] != environment and e["signal"] != "name"})
        text += "; conflicting signals: " + ", ".join(others) + "; the most restrictive wins"
    return text


def policy_decision(config: Config, environment: str, action_class: ActionClass,
                    cost: RecoveryRecord | None = None) -> tuple[Decision, str, str]:
    """(decision, the policy's reason, the rule's name). A delete whose recovery is not ``true`` is decided by the
    row's ``irreversible`` key when it has one; a row without it decides every delete alike."""
    row = config.policy.get(environment, {})
    irreversible = row.get(IRREVERSIBLE)
    if action_class == "delete" and irreversible is not None and cost is not None and cost["reversible"] is not True:
        what = "irreversible" if cost["reversible"] is False else "not known to be recoverable"
        return (irreversible, f"policy: an irreversible delete in {environment} is {irreversible} (this one is "
                              f"{what})", f"policy.{environment}.{IRREVERSIBLE}")
    decision: Decision | None = row.get(action_class)
    rule = f"policy.{environment}.{action_class}"
    if decision is None:
        return "deny", (f"policy.{environment} has no entry for {action_class}; denied (fail closed)"), rule
    return decision, f"policy: {action_class} in {environment} is {decision}", rule
