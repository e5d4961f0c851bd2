"""The check: may this action be done to this target? Pure functions over a label and the config.

An action is classified ``read``, ``create``, ``modify`` or ``delete``:
AWS operation names (with or without a service prefix, CamelCase or
snake_case) by their leading verb, Kubernetes verbs by name, and a table of
exceptions where the verb alone would be wrong (``PutBucketPolicy`` changes
a bucket, ``StopInstances`` can be undone). Anything not recognized is
``delete``: the irreversible class, so an unknown action is never waved through.

The decision comes from ``config.policy[environment][class]``. The
environment decided *as* is the label's, except that a target with no
authoritative label (never seen, gone, ``unknown``, stale) is decided as the
most restrictive environment (``config.environments[0]``, production by
default). Every decision carries its reasons, citing the evidence.

>>> classify("rds:DeleteDBInstance").action_class
'delete'
>>> classify("ec2:StopInstances").action_class
'modify'
>>> classify("patch").action_class
'modify'
>>> classify("Frobnicate").action_class
'delete'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from envlabel.config import ActionClass, Config, Decision, format_duration
from envlabel.model import UNKNOWN
from service.query import Query

READ: Final = "read"
CREATE: Final = "create"
MODIFY: Final = "modify"
DELETE: Final = "delete"

#: Kubernetes API verbs (RBAC names), matched exactly and case-insensitively.
K8S_VERBS: dict[str, ActionClass] = {
    "get": READ, "list": READ, "watch": READ,
    "create": CREATE,
    "update": MODIFY, "patch": MODIFY,
    "delete": DELETE, "deletecollection": DELETE,
}


def _each(action_class: ActionClass, words: str) -> dict[str, ActionClass]:
    return dict.fromkeys(words.split(), action_class)


#: The leading verb of an AWS operation name (``Describe`` of ``DescribeInstances``) -> class.
VERBS: dict[str, ActionClass] = {
    **_each(READ, "describe list get head search query scan select lookup view filter watch validate simulate "
                  "preview estimate"),
    **_each(CREATE, "create run put launch allocate import copy upload request restore clone provision register "
                    "issue"),
    **_each(MODIFY, "modify update patch tag untag attach detach associate disassociate enable disable start stop "
                    "reboot restart set change add apply authorize replace resize rotate reset promote failover "
                    "cancel revoke write edit configure scale activate deactivate assign unassign move rename "
                    "reload"),
    **_each(DELETE, "delete terminate remove purge destroy deregister release drop truncate wipe erase abort "
                    "deletecollection"),
}

#: Whole operation names (lowercased, no service prefix) where the leading verb gives the wrong class.
EXCEPTIONS: dict[str, ActionClass] = {
    # Put* that replaces the configuration of something that exists, rather than adding a thing
    **_each(MODIFY, "putbucketpolicy putbucketacl putbuckettagging putbucketversioning putbucketencryption "
                    "putbucketlifecycleconfiguration putbucketnotificationconfiguration putbucketcors "
                    "putbucketwebsite putbucketlogging putbucketreplication putpublicaccessblock putobjectacl "
                    "putobjecttagging putobjectretention putobjectlegalhold putrolepolicy putuserpolicy "
                    "putgrouppolicy putretentionpolicy putscalingpolicy putlifecyclepolicy putfunctionconcurrency "
                    "putmetricalarm putrule puttargets putparameter putresourcepolicy putkeypolicy"),
    # Delete* that removes only metadata or a setting of a resource that stays
    **_each(MODIFY, "deletetags removetagsfromresource untagresource deletebuckettagging deleteobjecttagging "
                    "deletefunctionconcurrency"),
    # stops and reboots can be undone
    **_each(MODIFY, "stopinstances startinstances rebootinstances rebootdbinstance rebootdbcluster stopdbinstance "
                    "stopdbcluster rebootnode"),
    # operations whose verb is not in the table but whose meaning is clear
    **_each(READ, "assumerole decrypt generatedatakey downloaddblogfileportion"),
    **_each(CREATE, "completemultipartupload publishversion publishlayerversion"),
}

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_ACTION = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
# A leading batch/bulk/force word says how many or how hard, not what: classify by the next word.
_QUALIFIERS = frozenset({"batch", "bulk", "force"})


@dataclass(frozen=True, slots=True)
class Classification:
    action_class: ActionClass
    reason: str
    recognized: bool

    @property
    def reversible(self) -> bool:
        return self.action_class != DELETE


def classify(action: str) -> Classification:
    """The class of ``action`` with a reason; unrecognized actions are ``delete``."""
    raw = action.strip()
    name = raw.rpartition(":")[2]  # "rds:DeleteDBInstance" -> "DeleteDBInstance"
    if not _ACTION.match(name):
        return _unrecognized(raw)
    lowered = name.lower()
    if lowered in K8S_VERBS:
        return Classification(K8S_VERBS[lowered], f"{raw} is the Kubernetes verb {lowered}: "
                                                  f"{K8S_VERBS[lowered]}", True)
    compact = lowered.replace("_", "").replace("-", "")
    if compact in EXCEPTIONS:
        return Classification(EXCEPTIONS[compact], f"{raw} is {EXCEPTIONS[compact]} (listed exception)", True)
    words = [w.lower() for part in re.split(r"[_\-]", name) for w in _WORDS.findall(part)]
    while len(words) > 1 and words[0] in _QUALIFIERS:
        words = words[1:]
    if words and words[0] in VERBS:
        cls = VERBS[words[0]]
        return Classification(cls, f"{raw} is {cls} ({words[0].capitalize()}* operations are {cls})", True)
    return _unrecognized(raw)


def _unrecognized(raw: str) -> Classification:
    return Classification(DELETE, f"{raw!r} is not a recognized AWS operation or Kubernetes verb; treated as "
                                  "delete, the irreversible class (fail closed)", False)


def decide(config: Config, action: str, label: dict[str, Any]) -> dict[str, Any]:
    """The check JSON for ``action`` on the target described by ``label`` (the label JSON)."""
    classification = classify(action)
    environment, label_reasons = environment_for_decision(config, label)
    decision, policy_reason = policy_decision(config, environment, classification.action_class)
    approvers = list(config.approvers.get(environment, [])) if decision == "require_approval" else []
    reasons = [classification.reason, *label_reasons, policy_reason]
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
    }


def environment_for_decision(config: Config, label: dict[str, Any]) -> tuple[str, list[str]]:
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


def describe_label(label: dict[str, Any]) -> str:
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


def check(query: Query, target: str, action: str) -> dict[str, Any]:
    """The check JSON for ``action`` on ``target`` (raises TargetError if the target is malformed)."""
    return decide(query.config, action, query.label(target))
