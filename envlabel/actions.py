"""The one action vocabulary: what class an action is, and whether it can be undone.

The check (``envlabel check``, ``POST /v1/check``, the MCP tool) and the SDK's guards both ask this
module, so the daemon and an agent's own process can never disagree about what is a read.

An action is classified ``read``, ``create``, ``modify`` or ``delete``:
AWS operation names (with or without a service prefix, CamelCase or
snake_case) by their leading verb, Kubernetes verbs by name, and a table of
exceptions where the verb alone would be wrong (``PutBucketPolicy`` changes
a bucket, ``StopInstances`` can be undone). Anything not recognized is
``delete``: the irreversible class, so an unknown action is never waved through.

>>> classify("rds:DeleteDBInstance").action_class
'delete'
>>> classify("ec2:StopInstances").action_class
'modify'
>>> classify("patch").action_class
'modify'
>>> classify("rds:DownloadDBLogFilePortion").action_class
'read'
>>> classify("Frobnicate").action_class
'delete'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from envlabel.config import ActionClass

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
                  "preview estimate download"),
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


def is_read(action: str) -> bool:
    """True when ``action`` is recognized as a read (a guard lets it through unchecked)."""
    return classify(action).action_class == READ
