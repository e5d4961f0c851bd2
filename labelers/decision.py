"""The check's decision rule: may this action be done to the target this label describes? Pure.

The decision comes from ``config.policy[environment][class]``. The
environment decided *as* is the label's, except that a target with no
authoritative label (never seen, gone, ``unknown``, stale) is decided as the
most restrictive environment (``config.environments[0]``, production by
default). Every decision carries its reasons, citing the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

from envlabel.actions import classify
from envlabel.config import Config, format_duration
from envlabel.model import UNKNOWN
from envlabel.records import ActionClass, CheckRecord, Decision, LabelRecord


def decide(config: Config, action: str, label: LabelRecord, *, decided_as: str | None = None,
           notes: Sequence[str] = ()) -> CheckRecord:
    """The check JSON for ``action`` on the target described by ``label`` (the label JSON).

    ``decided_as`` replaces the environment the label gives (the caller found a stricter one, such as a
    production resource inside the target); ``notes`` say why, before the policy's reason."""
    classification = classify(action)
    environment, label_reasons = environment_for_decision(config, label)
    environment = decided_as or environment
    decision, policy_reason = policy_decision(config, environment, classification.action_class)
    approvers = list(config.approvers.get(environment, [])) if decision == "require_approval" else []
    reasons = [classification.reason, *label_reasons, *notes, policy_reason]
    if decision == "require_approval":
        reasons.append(f"ask {', '.join(approvers)} to approve" if approvers else
                       f"no approvers are configured for {environment} (config approvers.{environment}); "
                       "ask the owner of the target")
    return {
        "target": label["target"],
        "action": action,
        "action_class": classification.action_class,
        "environment": environment,
        "decision": decision,
        "reversible": classification.reversible,
        "reasons": reasons,
        "approvers": approvers,
        "label": label,
        "understood_as": classification.understood_as,
        "rule": f"policy.{environment}.{classification.action_class}",
    }


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


def policy_decision(config: Config, environment: str, action_class: ActionClass) -> tuple[Decision, str]:
    row = config.policy.get(environment, {})
    decision: Decision | None = row.get(action_class)
    if decision is None:
        return "deny", (f"policy.{environment} has no entry for {action_class}; denied (fail closed)")
    return decision, f"policy: {action_class} in {environment} is {decision}"
