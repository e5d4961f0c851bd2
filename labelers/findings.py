"""Audit rules: observed resources + the labeling rules -> findings, one per fix.

Pure: no storage, no cloud SDKs. :class:`Auditor` is fed resources one at a
time (the service streams them out of the store) and keeps only what a
finding needs, so an estate of a million resources is audited without
holding it in memory. It recomputes each label from the same rules as
``labelers.resolve`` (tags, the container chain, active overrides) instead
of reading evidence back, which is both cheaper and exactly what the next
relabel would store.

Where a finding is reported is the point of the audit: on the resource
whose tag must change, not on everything that inherits the consequence.
One kind is about the resource rather than its label: ``unrecoverable``, a
production resource whose scanned recovery facts say a delete today could
not be undone (:func:`unrecoverable_because`).

>>> from envlabel.model import Resource
>>> from labelers.taxonomy import Taxonomy
>>> account = Resource("222222222222", "aws", "aws:account", "shop", None, {"Environment": "prod"})
>>> vpc = Resource("vpc-1", "aws", "ec2:vpc", "main", "222222222222", {"env": "dev"})
>>> auditor = Auditor(Taxonomy(), {account.id: account, vpc.id: vpc}, {})
>>> [auditor.add(r) for r in (account, vpc, Resource("i-1", "aws", "ec2:instance", "web", "vpc-1"))]
['production', 'production', 'production']
>>> [(f.target, f.kind, f.severity, f.environment) for f in auditor.findings()]
[('vpc-1', 'conflict', 'high', 'production'), ('222222222222', 'non-canonical', 'low', 'production')]

Severity means risk (:meth:`Auditor.severity`, the table in docs/audit.md): high when a target is left unknown or
a production resource reads as another environment, low for spellings the labeler already understands.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from envlabel.config import DEFAULT_TAG_KEYS
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.taxonomy import Match, Taxonomy
from envlabel.model import UNKNOWN, Evidence, Override, Resource

CONFLICT = "conflict"
AMBIGUOUS = "ambiguous"
UNLABELED = "unlabeled"
NON_CANONICAL = "non-canonical"
UNRECOGNIZED = "unrecognized"
NAME_MISMATCH = "name-mismatch"
STALE = "stale"
UNRECOVERABLE = "unrecoverable"
#: report order within a severity: what leaves a target wrong or unknown first, then what a mistake would cost
KINDS = (CONFLICT, AMBIGUOUS, UNLABELED, UNRECOGNIZED, STALE, UNRECOVERABLE, NAME_MISMATCH, NON_CANONICAL)
SEVERITIES = ("high", "medium", "low")
#: the tops of a hierarchy: they hold every environment by design, so no one tag labels them (see _partly_labeled)
ORGANIZATION_KINDS = frozenset({"aws:root", "gcp:organization"})
#: how many resources a partly-labeled container's finding names per environment (the count gives the rest)
_NAMED_PER_ENVIRONMENT = 3
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
#: a Finding from all its fields, without the named tuple's own __new__ (a Python function)
_new_finding = tuple.__new__
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}


class Observed(Protocol):
    """What the audit reads of a resource. :class:`envlabel.model.Resource` is one; the store's audit
    stream yields lighter rows with the same fields (a million frozen dataclasses cost seconds)."""

    @property
    def id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def scope(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def name_signal(self) -> bool: ...
    @property
    def declared(self) -> str | None: ...
    @property
    def path(self) -> str: ...
    @property
    def facts(self) -> Mapping[str, Any]: ...


def describe(resource: Observed) -> str:
    return f"{resource.kind} {resource.path or resource.name or resource.id}"


class Finding(NamedTuple):
    """One thing to fix. ``tags`` is the fix when it is a tag change (keys keep the casing the
    resource already uses); ``advice`` says in words what to do; ``covers`` counts the resources
    the fix relabels (an unlabeled account covers everything in it).

    A NamedTuple rather than a frozen dataclass: a messy estate yields one per resource, and building
    a tuple costs a third of a frozen dataclass.
    """

    target: str
    kind: str
    severity: str
    environment: str
    message: str
    advice: str
    tags: tuple[tuple[str, str], ...] = ()
    resource: Observed | None = None
    covers: int = 1
    #: for stale findings: the source whose scan must succeed again
    source: str = ""

    def sort_key(self) -> tuple[int, int, str]:
        return _SEVERITY_ORDER[self.severity], _KIND_ORDER[self.kind], self.target


class _OneTag(NamedTuple):
    """What one environment tag below a chain comes to (:meth:`Auditor._one_tag_of`). The chain and the tag list
    are held so their ids stay their own."""

    above: tuple[tuple[Evidence, ...], frozenset[str], str]
    tagged: list[tuple[str, str, Match]]
    environment: str
    #: the finding's (kind, severity, environment, message after the resource's description, advice, tags)
    finding: tuple[str, str, str, str, str, tuple[tuple[str, str], ...]] | None


@dataclass(frozen=True, slots=True)
class StaleScope:
    """Where staleness is measured (``scope`` of a ``source``) and what its last scan said."""

    source: str
    scope: str
    errors: tuple[str, ...] = ()


@dataclass
class _Stale:
    count: int = 0
    environments: Counter[str] = field(default_factory=Counter)
    last_seen: str = ""


class Auditor:
    """Feed every live resource to :meth:`add`, then read :meth:`findings`.

    ``containers`` are the resources that are some resource's parent (their signals flow
    down); ``overrides`` the active overrides; a resource observed before ``stale_before``
    (an ISO text timestamp, compared as text) counts towards a ``stale`` finding of its scope.
    """

    def __init__(self, taxonomy: Taxonomy, containers: Mapping[str, Resource], overrides: Mapping[str, Override],
                 *, stale_before: str | None = None, scan_errors: Mapping[tuple[str, str], Iterable[str]] | None = None,
                 tag_key: str = DEFAULT_TAG_KEYS[0]) -> None:
        self.taxonomy = taxonomy
        self.containers = containers
        self.overrides = overrides
        self.stale_before = stale_before
        self.scan_errors = {k: tuple(v) for k, v in (scan_errors or {}).items()}
        self._labeler = Labeler(taxonomy, containers, overrides)
        self._above: dict[str | None, tuple[tuple[Evidence, ...], frozenset[str], str]] = {}
        self._first_key = tag_key
        self._found: list[Finding] = []
        self._unknown: list[Observed] = []
        self._unknown_containers: set[str] = set()
        self._known_parents: set[str] = set()
        # what is labeled by its own signal right below a container with none (per that parent, by environment):
        # the note of a partly-labeled container's finding, kept as counts plus a few named resources
        self._frontier: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._frontier_named: defaultdict[tuple[str, str], list[Observed]] = defaultdict(list)
        self._stale: dict[tuple[str, str], _Stale] = defaultdict(_Stale)
        self._top = taxonomy.environments[0]
        self._names: dict[str, frozenset[str]] = {}
        self._tagged: dict[int, tuple[Mapping[str, str], list[tuple[str, str, Match]]]] = {}
        self._alarming = frozenset({self._top, UNKNOWN})
        # what one environment tag below a chain comes to, per (chain, tag) (see _one_tag_of)
        self._one_tag: dict[tuple[int, int], _OneTag] = {}
        self._spellings: dict[tuple[str, str, str], tuple[str, str, tuple[tuple[str, str], ...]]] = {}
        # a C-level key for min(); an environment no longer configured (an old override) ranks as unknown
        ranks: defaultdict[str, int] = defaultdict(lambda: len(taxonomy.environments))
        ranks.update({env: taxonomy.rank(env) for env in taxonomy.environments})
        self._rank = ranks.__getitem__

    # -- per resource -------------------------------------------------------------------------
    def above(self, parent: str | None) -> tuple[tuple[Evidence, ...], frozenset[str], str]:
        """The chain handed to children of ``parent``: evidence, its environments, the most restrictive."""
        cached = self._above.get(parent)
        if cached is None:
            evidence = self._labeler.chain(parent).evidence
            envs = frozenset(e.environment for e in evidence)
            cached = (evidence, envs, self.taxonomy.most_restrictive(envs))
            self._above[parent] = cached
        return cached

    def add(self, resource: Observed, source: str = "", observed: str = "") -> str:
        """Audit one resource and return the environment the audit holds it to be: the labeler's
        (``Labeler.label(resource).environment``; tests/test_audit_consistency.py holds the two equal).
        ``observed`` is when its scope was last scanned completely (ISO text)."""
        return self.feed(((resource, source, observed),))[0]

    def feed(self, batch: Iterable[tuple[Observed, str, str]]) -> list[str]:
        """:meth:`add` for each ``(resource, source, observed)`` of ``batch`` (the store's audit stream), in order;
        the environments, in the same order."""
        # The common resource has no signal of its own and just inherits: keep that path to a few lookups. A
        # million resources: what the loop reads of the auditor is read once per batch, a resource's fields once.
        above_of, above, tagged_of, environment_tags = self._above.get, self.above, self._tagged.get, \
            self._environment_tags
        overrides = self.overrides or None
        containers, known, unknown = self.containers, self._known_parents, self._unknown
        said_of, alarming, stale_before = self._names.get, self._alarming, self.stale_before
        environments: list[str] = []
        keep = environments.append
        for resource, source, observed in batch:
            parent, tags, name_signal = resource.parent, resource.tags, resource.name_signal
            chain = above_of(parent) or above(parent)
            tagged = (cached[1] if (cached := tagged_of(id(tags))) is not None and cached[0] is tags
                      else environment_tags(tags)) if tags else []
            override = overrides.get(resource.id) if overrides is not None else None
            if tagged or name_signal or resource.declared or override is not None:
                environment = self._one_tag_of(resource, tagged, chain) \
                    if len(tagged) == 1 and not name_signal and override is None and not resource.declared \
                    else self._add_signalled(resource, tagged, chain, override)
                if parent is not None and not chain[0] and environment != UNKNOWN:
                    self._note_frontier(resource, parent, environment)
            else:
                environment = chain[2]
            if environment == UNKNOWN:
                unknown.append(resource)
                if resource.id in containers:
                    self._unknown_containers.add(resource.id)
            elif parent is not None and parent not in known:
                self._mark_known(parent)
            name = resource.name
            if name and not name_signal and environment != UNKNOWN:
                said = said_of(name)
                if said is None:
                    said = self._name_says(name)
                if said and environment not in said:
                    self._name_mismatch(resource, environment, said)
            facts = resource.facts
            if facts and environment in alarming:
                self._unrecoverable(resource, facts, environment)
            if observed and stale_before is not None and observed < stale_before:
                self._note_stale(resource, source, observed, environment)
            keep(environment)
        return environments

    def _one_tag_of(self, resource: Observed, tagged: list[tuple[str, str, Match]],
                    above: tuple[tuple[Evidence, ...], frozenset[str], str]) -> str:
        """:meth:`_add_one_tag`, remembered per (chain, tag): the environment, and the finding but for the resource's
        own id and words, are the same for every resource with that tag below the same containers (a messy
        estate: a conflict or a spelling on half of its resources)."""
        key = (id(above), id(tagged))
        known = self._one_tag.get(key)
        if known is None or known.above is not above or known.tagged is not tagged:
            count = len(self._found)
            environment = self._add_one_tag(resource, tagged, above)
            known = _OneTag(above, tagged, environment, None)
            if len(self._found) != count:
                found = self._found[-1]
                said = f"{resource.kind} {resource.path or resource.name or resource.id}"
                if len(self._found) != count + 1 or found.kind not in (CONFLICT, NON_CANONICAL) \
                        or not found.message.startswith(said):
                    return environment  # a finding that depends on the resource itself (unrecognized): not kept
                known = _OneTag(above, tagged, environment, (found.kind, found.severity, found.environment,
                                                              found.message[len(said):], found.advice, found.tags))
            if len(self._one_tag) >= 100_000:
                self._one_tag.clear()
            self._one_tag[key] = known
            return environment
        if known.finding is not None:
            kind, severity, expected, rest, advice, tags = known.finding
            self._found.append(_new_finding(Finding, (
                resource.id, kind, severity, expected,
                f"{resource.kind} {resource.path or resource.name or resource.id}{rest}", advice, tags, resource, 1,
                "")))
        return known.environment

    def _name_says(self, name: str) -> frozenset[str]:
        """The environments ``name`` suggests, remembered per name (names repeat across an estate)."""
        said = frozenset(self.taxonomy.name_environments(name))
        if len(self._names) < 200_000:
            self._names[name] = said
        return said

    def _note_stale(self, resource: Observed, source: str, observed: str, environment: str) -> None:
        stale = self._stale[(source, resource.scope)]
        stale.count += 1
        stale.environments[environment] += 1
        stale.last_seen = max(stale.last_seen, observed)

    def _note_frontier(self, resource: Observed, parent: str, environment: str) -> None:
        """Remember a resource labeled by its own signal below containers with none: it is what disagrees (or
        agrees) with the label those containers' findings suggest."""
        self._frontier[parent][environment] += 1
        named = self._frontier_named[(parent, environment)]
        if len(named) < _NAMED_PER_ENVIRONMENT:
            named.append(resource)

    def _environment_tags(self, tags: Mapping[str, str]) -> list[tuple[str, str, Match]]:
        """:meth:`Taxonomy.environment_tags`, once per tags mapping: the store's audit stream hands every
        resource with the same tags the same dict. Keyed by identity, holding the dict so its id stays its own."""
        cached = self._tagged.get(id(tags))
        if cached is not None and cached[0] is tags:
            return cached[1]
        tagged = self.taxonomy.environment_tags(tags)
        if len(self._tagged) >= 100_000:
            self._tagged.clear()
        self._tagged[id(tags)] = (tags, tagged)
        return tagged

    def _add_signalled(self, resource: Observed, tagged: list[tuple[str, str, Match]],
                       above: tuple[tuple[Evidence, ...], frozenset[str], str], override: Override | None) -> str:
        """The environment of a resource with signals of its own, reporting what is wrong with them."""
        chain, chain_envs, chain_env = above
        if len(tagged) == 1 and override is None and not resource.declared and not resource.name_signal:
            return self._add_one_tag(resource, tagged, above)
        own = self.own_environments(resource, tagged)
        if override is not None:
            environment = override.environment
        elif own:
            environment = min((*own, chain_env) if chain else own, key=self._rank)
        else:
            environment = chain_env
        if tagged:
            self._check_tags(resource, tagged, own, chain=chain, chain_envs=chain_envs, environment=environment,
                             override=override)
        elif own and override is None and ((chain_envs and (len(chain_envs) > 1 or own[0] not in chain_envs))
                                           or own.count(own[0]) != len(own)):
            self._conflict(resource, [], own[0], chain=chain, environment=environment, own=own)
        return environment

    def _add_one_tag(self, resource: Observed, tagged: list[tuple[str, str, Match]],
                     above: tuple[tuple[Evidence, ...], frozenset[str], str]) -> str:
        """The most common signalled resource, one environment tag and nothing else: the rules of
        :meth:`_check_tags` for that case, without building the general case's sets and lists."""
        chain, chain_envs, chain_env = above
        key, value, match = tagged[0]
        mine = match.environment
        if mine is None:
            self._unrecognized(resource, key, value, chain_env)
            return chain_env
        environment = min(mine, chain_env, key=self._rank) if chain else mine
        if chain_envs and (len(chain_envs) > 1 or mine not in chain_envs):
            self._conflict(resource, tagged, mine, chain=chain, environment=environment, own=[mine])
        elif not match.canonical:
            self._non_canonical(resource, key, value, mine)
        return environment

    def own_environments(self, resource: Observed, tagged: list[tuple[str, str, Match]]) -> list[str]:
        """The environments a resource's own signals say: its tags, its configured environment, a declaring name."""
        own: list[str] = [m.environment for _, _, m in tagged if m.environment is not None]
        if resource.declared:
            own.append(resource.declared)
        if resource.name_signal:
            declared = self.taxonomy.normalize(resource.name).environment
            if declared is not None:
                own.append(declared)
        return own

    def _mark_known(self, node: str | None) -> None:
        """Note that something below ``node`` (and every container above it) has an environment."""
        while node is not None and node not in self._known_parents:
            self._known_parents.add(node)
            parent = self.containers.get(node)
            node = parent.parent if parent is not None else None

    def _check_tags(self, resource: Observed, tagged: list[tuple[str, str, Match]], own: list[str], *,
                    chain: tuple[Evidence, ...], chain_envs: frozenset[str], environment: str,
                    override: Override | None) -> None:
        recognized = {m.environment for _, _, m in tagged if m.environment is not None}
        if len(recognized) > 1:
            self._ambiguous(resource, tagged, environment)
            return  # the fix rewrites every environment tag; nothing else on this resource remains
        fixed = False
        if recognized:
            mine = next(iter(recognized))
            if override is not None:  # a person decided; a tag saying otherwise misleads every other tool
                if mine != override.environment:
                    decided = Evidence("override", override.environment, override.target,
                                       f"an override by {override.author} ({override.reason})")
                    self._conflict(resource, tagged, mine, chain=(decided,), environment=environment, own=[])
                    fixed = True
            elif (chain_envs and (len(chain_envs) > 1 or mine not in chain_envs)) or own.count(mine) != len(own):
                self._conflict(resource, tagged, mine, chain=chain, environment=environment, own=own)
                fixed = True
        for key, value, match in tagged:
            if match.environment is None:
                self._unrecognized(resource, key, value, environment)
            elif not match.canonical and not fixed:
                self._non_canonical(resource, key, value, match.environment)

    # -- finding builders ---------------------------------------------------------------------
    def severity(self, kind: str, label: str, expected: str = "") -> str:
        """Risk, not noise (the table in docs/audit.md, "Severity"). ``label`` is what the target is treated as
        now (``unknown`` included), ``expected`` what the finding suggests.

        high: the finding leaves a target unknown, or a production resource reads as another environment (a
        conflict or several tags toward a weaker one, a name saying another, a value nothing reads), or a delete
        could not be undone. medium: a label that may be wrong away from production, and a name saying
        production on a resource labeled otherwise (it may be production). low: spellings the labeler already
        reads, and names that mix up two environments that are not production.
        """
        if kind == NON_CANONICAL:
            return "low"
        if kind in (UNLABELED, UNRECOVERABLE) or label in self._alarming:
            return "high"
        if kind == NAME_MISMATCH:
            return "medium" if expected == self._top else "low"
        return "medium"

    def _emit(self, resource: Observed, kind: str, environment: str, label: str, *, message: str, advice: str,
              tags: tuple[tuple[str, str], ...] = (), covers: int = 1) -> None:
        """One finding: ``environment`` is the expected one, ``label`` what the resource is treated as now."""
        self._found.append(Finding(resource.id, kind, self.severity(kind, label, environment), environment,
                                   message, advice, tags, resource, covers))

    def tag_key(self, resource: Observed) -> str:
        """The environment tag key to set: the one the resource already uses, else the first configured."""
        for key in resource.tags:
            if self.taxonomy.is_environment_key(key):
                return key
        return self._first_key

    def _conflict(self, resource: Observed, tagged: list[tuple[str, str, Match]], mine: str, *,
                  chain: tuple[Evidence, ...], environment: str, own: list[str]) -> None:
        other = next((e for e in chain if e.environment != mine), None)
        if other is None:  # the disagreement is between its own tag and its configured environment or name
            theirs = next(e for e in own if e != mine)
            other = Evidence("tag", theirs, resource.id, f"the configured environment or name of {describe(resource)}")
        said = f"tag {tagged[0][0]}={tagged[0][1]}" if tagged else "its own signal"
        key = tagged[0][0] if tagged else self.tag_key(resource)
        where = f"{other.detail} ({other.source})" if other.source not in other.detail else other.detail
        message = (f"{describe(resource)} says {mine} ({said}) but {where} says {other.environment}; "
                   f"it is labeled {environment}")
        if other.signal == "override":
            advice = f"set {key}={other.environment} to agree with the override, which can then be removed"
            fix = other.environment
        elif self.taxonomy.rank(mine) > self.taxonomy.rank(other.environment):
            advice = (f"set {key}={environment}: it is inside {other.environment} and is treated as "
                      f"{environment}; if it really is {mine}, move it out of {other.source} instead")
            fix = environment
        else:  # the resource claims more than its container: moving it is as likely a fix as retagging
            advice = (f"if it really is {mine}, move it out of {other.source} (a {other.environment} container); "
                      f"otherwise set {key}={other.environment}. Until then it is treated as {environment}")
            fix = other.environment
        tags = ((key, fix),) if tagged else ()
        if not tagged:
            advice = (f"its {mine} comes from configuration or its name ({describe(resource)}); change that, or "
                      f"set an environment tag on {other.source}")
        self._emit(resource, CONFLICT, environment, environment, message=message, advice=advice, tags=tags)

    def _ambiguous(self, resource: Observed, tagged: list[tuple[str, str, Match]], environment: str) -> None:
        values = ", ".join(f"{k}={v}" for k, v, _ in tagged)
        keys = tuple(dict.fromkeys(k for k, _, _ in tagged))
        message = f"{describe(resource)} has environment tags that disagree ({values}); it is labeled {environment}"
        advice = f"keep one environment tag, or set every one of them to {environment}"
        self._emit(resource, AMBIGUOUS, environment, environment, message=message, advice=advice,
                   tags=tuple((k, environment) for k in keys))

    def _unrecognized(self, resource: Observed, key: str, value: str, environment: str) -> None:
        expected = environment if environment != UNKNOWN else self.expected_unknown(resource)
        allowed = ", ".join(self.taxonomy.environments)
        message = f"{describe(resource)} has tag {key}={value}, which names no environment ({allowed})"
        if environment == UNKNOWN:
            message += "; it has no environment and is treated as production"
        else:
            message += f"; it is labeled {environment} from its containers"
        advice = f"set {key} to one of {allowed}; {expected} if it is what it is treated as"
        self._emit(resource, UNRECOGNIZED, expected, environment, message=message, advice=advice,
                   tags=((key, expected),))

    def _non_canonical(self, resource: Observed, key: str, value: str, means: str) -> None:
        # the most frequent finding of a messy estate: built inline, without the generic helpers, its words but the
        # resource's own once per tag. Always low: the labeler reads the value already (production stays
        # production); the fix is for the other tools
        cached = self._spellings.get((key, value, means))
        if cached is None:
            cached = (f" has tag {key}={value}, understood as {means} but not spelled {means}",
                      f"set {key}={means} so every tool reading the tag agrees", ((key, means),))
            if len(self._spellings) < 10_000:
                self._spellings[(key, value, means)] = cached
        rest, advice, tags = cached
        self._found.append(_new_finding(Finding, (
            resource.id, NON_CANONICAL, "low", means,
            f"{resource.kind} {resource.path or resource.name or resource.id}{rest}", advice, tags, resource, 1, "")))

    def _name_mismatch(self, resource: Observed, environment: str, said: frozenset[str]) -> None:
        hinted = self.taxonomy.most_restrictive(said)
        expected = self.taxonomy.most_restrictive((hinted, environment))
        key = self.tag_key(resource)
        message = (f"{describe(resource)}: its name {resource.name!r} says {hinted} but it is labeled "
                   f"{environment}")
        if expected == hinted:
            advice = (f"if it is {hinted}, set {key}={hinted} (a look-alike twin is how the wrong system gets "
                      f"deleted); if it is not, rename it")
        else:
            advice = f"rename it: a name saying {hinted} on a {environment} resource invites the wrong action"
        self._emit(resource, NAME_MISMATCH, expected, environment, message=message, advice=advice,
                   tags=((key, expected),) if expected == hinted else ())

    def _unrecoverable(self, resource: Observed, facts: Mapping[str, Any], environment: str) -> None:
        why = unrecoverable_because(resource.kind, facts)
        if not why:
            return
        treated = environment if environment != UNKNOWN else f"{self._top} (it is unlabeled)"
        message = (f"{describe(resource)} is {treated} and could not be recovered if it were deleted today: "
                   f"{'; '.join(why)}")
        self._found.append(Finding(resource.id, UNRECOVERABLE, "high", environment if environment != UNKNOWN
                                   else self._top, message, _RECOVERY_ADVICE[resource.kind], (), resource))

    def expected_unknown(self, resource: Observed) -> str:
        """What an unlabeled resource should probably be: its name's hint, else the most restrictive."""
        hinted = self.taxonomy.name_environments(resource.name) if resource.name else set()
        return self.taxonomy.most_restrictive(hinted) if hinted else self._top

    # -- whole-estate findings ----------------------------------------------------------------
    def _anchor(self, resource: Observed, fully: set[str]) -> str:
        """Where the fix for an unlabeled resource belongs: the top-most container whose whole subtree
        (``fully``) is unlabeled, else the resource itself."""
        top = resource.id
        node = resource.parent
        while node in fully:
            top = node
            container = self.containers.get(node)
            node = container.parent if container is not None else None
        return top

    def _unlabeled(self) -> None:
        # What is unlabeled is reported where its fix belongs: the top of a wholly unlabeled subtree. A container
        # with no signal whose subtree is only partly unlabeled is reported on itself as well (_partly_labeled).
        fully = self._unknown_containers - self._known_parents
        anchors: Counter[str] = Counter(self._anchor(r, fully) for r in self._unknown
                                        if r.id not in self._unknown_containers or r.id in fully)
        resources = {r.id: r for r in self._unknown if r.id in anchors}
        unrecognized = {f.target: i for i, f in enumerate(self._found) if f.kind == UNRECOGNIZED}
        for target, count in sorted(anchors.items()):
            if target in unrecognized:  # one fix: give the tag a recognized value
                found = self._found[unrecognized[target]]
                if count > 1:
                    self._found[unrecognized[target]] = found._replace(
                        covers=count, message=f"{found.message}; {count - 1} resource(s) in it inherit nothing "
                        "until it is fixed")
                continue
            resource = resources.get(target) or self.containers.get(target)
            if resource is None:
                continue
            expected = self.expected_unknown(resource)
            key = self.tag_key(resource)
            below = f" and {count - 1} resource(s) in it have" if count > 1 else " has"
            message = (f"{describe(resource)}{below} no environment signal (no tag, no labeled container); "
                       f"agents must treat {'them' if count > 1 else 'it'} as production")
            advice = self._label_it(resource, key, expected)
            if count > 1:
                advice += f"; everything in it inherits the tag ({count} resources)"
            self._emit(resource, UNLABELED, expected, UNKNOWN, message=message, advice=advice, tags=((key, expected),),
                       covers=count)
        self._partly_labeled(anchors, resources, unrecognized)

    def _label_it(self, resource: Observed, key: str, expected: str) -> str:
        """The words of an unlabeled resource's fix: its tag, or for a Kubernetes cluster its source's configuration
        (a cluster carries no label of its own)."""
        if resource.kind == "k8s:cluster":
            return (f"set environment: {expected} on its source in the configuration, or tag its EKS/GKE cluster "
                    f"(or {self._others(expected)}, whichever it is)")
        return f"set {key}={expected} on it (or {self._others(expected)}, whichever it is)"

    def _others(self, environment: str) -> str:
        return " / ".join(e for e in self.taxonomy.environments if e != environment)

    def _partly_labeled(self, anchors: Counter[str], resources: Mapping[str, Observed],
                        unrecognized: Mapping[str, int]) -> None:
        """Report each container with no signal of its own that holds labeled resources (an account whose
        buckets carry tags): it stays unknown, so every check treats it as production, and without this nothing
        names it. The fix labels it; the message names what in it already says another environment, since
        that tag would put them in conflict. The top of a hierarchy (an Organization root, a GCP organization)
        holds every environment by design and is not reported."""
        partly = {c for c in self._unknown_containers & self._known_parents
                  if c in self.containers and self.containers[c].kind not in ORGANIZATION_KINDS}
        if not partly:
            return
        said, named = self._said_below(partly)
        unlabeled = self._unlabeled_below(partly, anchors, resources)
        for target in sorted(partly):
            container = self.containers[target]
            if target in unrecognized:  # its tag names no environment: that finding is the fix; add the note
                index = unrecognized[target]
                found = self._found[index]
                self._found[index] = found._replace(
                    message=found.message + self._disagreeing(found.environment, said[target], named, target))
                continue
            self._partly_labeled_finding(container, said[target], named, unlabeled[target])

    def _partly_labeled_finding(self, container: Resource, said: Counter[str],
                                named: Mapping[tuple[str, str], list[Observed]], unlabeled: int) -> None:
        expected = self.expected_unknown(container)
        key = self.tag_key(container)
        message = (f"{describe(container)} has no environment signal of its own (no tag, no labeled container) "
                   f"while {sum(said.values())} resource(s) in it carry one; agents must treat it as production"
                   f"{self._disagreeing(expected, said, named, container.id)}")
        advice = self._label_it(container, key, expected)
        if unlabeled:
            advice += f"; the {unlabeled} unlabeled resource(s) in it inherit the tag"
        weaker = [e for e in said if e != expected and self._rank(e) > self._rank(expected)]
        if weaker:
            advice += (f"{',' if unlabeled else ';'} and those saying {' or '.join(sorted(weaker, key=self._rank))} "
                       f"become conflicts labeled {expected}")
        agreed = set(said)
        if len(agreed) == 1 and expected not in agreed:
            [theirs] = agreed
            advice += f"; if it is {theirs}, as everything labeled in it says, set {key}={theirs} instead"
        self._emit(container, UNLABELED, expected, UNKNOWN, message=message, advice=advice,
                   tags=((key, expected),), covers=1 + unlabeled)

    def _disagreeing(self, expected: str, said: Counter[str], named: Mapping[tuple[str, str], list[Observed]],
                     target: str) -> str:
        """The note on what in ``target`` already says another environment than ``expected`` (empty: nothing)."""
        parts = []
        for environment in sorted((e for e in said if e != expected), key=self._rank):
            count = said[environment]
            listed = named.get((target, environment), [])
            names = ", ".join(f"{describe(r)} ({r.id})" if r.id not in describe(r) else describe(r) for r in listed)
            more = f" and {count - len(listed)} more" if count > len(listed) else ""
            parts.append(f"{count} resource(s) already say {environment}: {names}{more}")
        return f"; in it, {'; '.join(parts)}" if parts else ""

    def _ancestors(self, node: str | None) -> Iterator[str]:
        """``node`` and the containers above it, nearest first (a loop in bad data ends the walk)."""
        seen: set[str] = set()
        while node is not None and node not in seen:
            seen.add(node)
            yield node
            container = self.containers.get(node)
            node = container.parent if container is not None else None

    def _said_below(self, partly: set[str]) -> tuple[defaultdict[str, Counter[str]],
                                                      dict[tuple[str, str], list[Observed]]]:
        """Per partly-labeled container: the environments what is labeled in it says (its own signal right below
        unlabeled containers), and a few of those resources by name."""
        said: defaultdict[str, Counter[str]] = defaultdict(Counter)
        named: dict[tuple[str, str], list[Observed]] = {}
        for parent, counts in self._frontier.items():
            for node in self._ancestors(parent):
                if node not in partly:
                    continue
                said[node].update(counts)
                for environment in counts:
                    listed = named.setdefault((node, environment), [])
                    room = _NAMED_PER_ENVIRONMENT - len(listed)
                    listed.extend(self._frontier_named[(parent, environment)][:max(room, 0)])
        return said, named

    def _unlabeled_below(self, partly: set[str], anchors: Counter[str],
                         resources: Mapping[str, Observed]) -> Counter[str]:
        """Per partly-labeled container: how many unlabeled resources below it its tag would label (the
        unlabeled subtrees reported on their own, and the partly-labeled containers below it)."""
        below: Counter[str] = Counter()
        tops = [(top.parent if top is not None else None, n)
                for top, n in ((resources.get(t) or self.containers.get(t), n) for t, n in anchors.items())]
        for parent, count in [*tops, *((self.containers[c].parent, 1) for c in partly)]:
            for node in self._ancestors(parent):
                if node in partly:
                    below[node] += count
        return below

    def _stale_scopes(self) -> None:
        for (source, scope), stale in self._stale.items():
            environment = self.taxonomy.most_restrictive(stale.environments)
            errors = self.scan_errors.get((source, scope)) or self.scan_errors.get((source, ""), ())
            why = f"; the last scan failed: {'; '.join(errors)}" if errors else ""
            message = (f"{stale.count} resource(s) of scope {scope or source} (source {source}) were last scanned "
                       f"completely at {stale.last_seen}{why}; their labels are stale and agents treat them as "
                       "production")
            advice = f"make the scan of source {source} succeed again (fix its credentials or endpoint), then rescan"
            self._found.append(Finding(scope or source, STALE, self.severity(STALE, environment), environment,
                                       message, advice, (), None, stale.count, source))

    def findings(self) -> list[Finding]:
        """Every finding, most severe first, then by kind and target (a stable order for diffs and golden files)."""
        self._unlabeled()
        self._stale_scopes()
        found, self._found = self._found, []
        # bucket by (severity, kind), then sort each bucket by target: C-level keys, not a method per finding
        buckets: defaultdict[tuple[str, str], list[Finding]] = defaultdict(list)
        severity_kind = itemgetter(2, 1)
        for finding in found:
            buckets[severity_kind(finding)].append(finding)
        by_target = itemgetter(0)
        return [f for key in sorted(buckets, key=lambda k: (_SEVERITY_ORDER[k[0]], _KIND_ORDER[k[1]]))
                for f in sorted(buckets[key], key=by_target)]


# -- unrecoverable: what a delete today would lose for good ---------------------------------------
#: per kind, in words, what makes a deletion recoverable (the command is labelers.remediation.recovery_command)
_RECOVERY_ADVICE = {
    "rds:db": "turn on deletion protection and automated backups (7 days, or what your policy says); until then a "
              "delete with SkipFinalSnapshot loses the database for good",
    "rds:cluster": "turn on deletion protection and automated backups (7 days, or what your policy says) on the "
                   "cluster",
    "s3:bucket": "turn on versioning, so a deleted or overwritten object can be restored from its previous version",
    "dynamodb:table": "turn on point-in-time recovery and deletion protection",
    "k8s:persistentvolumeclaims": "set the bound volume's reclaim policy to Retain, so deleting the claim keeps "
                                  "the disk; for new claims use a StorageClass with reclaimPolicy: Retain",
    "sqladmin.Instance": "turn on deletion protection and automated backups",
    "storage.Bucket": "turn on object versioning (and keep soft delete), so deleted objects can be restored",
}


def _off(facts: Mapping[str, Any], key: str, what: str) -> str | None:
    """``what`` when the fact ``key`` is known to be false (or 0, or no snapshot); None when on or not known."""
    if key not in facts:
        return None
    value = facts[key]
    return what if value is False or value == 0 or value is None else None


def _all_off(facts: Mapping[str, Any], checks: tuple[tuple[str, str], ...]) -> list[str]:
    """The reasons, when every one of ``checks`` is known to be off: one fact on (or unknown) is a way back."""
    unreadable = set(facts.get("unreadable") or ())
    reasons = [None if key in unreadable else _off(facts, key, what) for key, what in checks]
    return [r for r in reasons if r is not None] if all(reasons) else []


_CHECKS: dict[str, tuple[tuple[str, str], ...]] = {
    "rds:db": (("deletion_protection", "deletion protection is off"),
               ("backup_retention_days", "automated backups are off (retention 0 days)"),
               ("latest_snapshot", "it has no snapshot")),
    "rds:cluster": (("deletion_protection", "deletion protection is off"),
                    ("backup_retention_days", "automated backups are off (retention 0 days)"),
                    ("latest_snapshot", "it has no snapshot")),
    "dynamodb:table": (("deletion_protection", "deletion protection is off"),
                       ("point_in_time_recovery", "point-in-time recovery is off"),
                       ("latest_backup", "it has no backup")),
    "sqladmin.Instance": (("deletion_protection", "deletion protection is off"),
                          ("backups_enabled", "automated backups are off")),
    "storage.Bucket": (("versioning", "object versioning is off"),
                       ("soft_delete_days", "soft delete is off")),
}


def unrecoverable_because(kind: str, facts: Mapping[str, Any]) -> list[str]:
    """Why deleting this resource today could not be undone, from its scanned facts; ``[]`` when it could, or
    when a fact that decides it is not known (the audit reports what it knows; the check treats the unknown as
    irreversible on its own).

    >>> unrecoverable_because("rds:db", {"deletion_protection": False, "backup_retention_days": 0,
    ...                                  "latest_snapshot": None, "read_replica_of": None, "cluster": None})
    ['deletion protection is off', 'automated backups are off (retention 0 days)', 'it has no snapshot']
    >>> unrecoverable_because("rds:db", {"deletion_protection": False, "backup_retention_days": 0,
    ...     "latest_snapshot": {"id": "orders-manual", "at": "2026-12-01T03:00:00Z", "kind": "manual"}})
    []
    >>> unrecoverable_because("rds:db", {"deletion_protection": False, "backup_retention_days": 0,
    ...                                  "latest_snapshot": None, "read_replica_of": "orders-db"})
    []
    >>> unrecoverable_because("s3:bucket", {"versioning": "Suspended", "object_lock": False, "replication": False})
    ['versioning is Suspended', 'no object lock', 'no replication']
    >>> unrecoverable_because("k8s:persistentvolumeclaims", {"reclaim_policy": "Delete", "volume": "pvc-1"})
    ['its volume pvc-1 is deleted with it (reclaim policy Delete)']
    >>> unrecoverable_because("dynamodb:table", {"deletion_protection": False, "latest_backup": None,
    ...                                          "unreadable": ["point_in_time_recovery"]})
    []
    """
    if kind == "rds:db" and (facts.get("read_replica_of") or facts.get("cluster")):
        return []  # a replica's data lives on in its source; a cluster member's in the cluster (audited itself)
    if kind == "s3:bucket":
        return _bucket_because(facts)
    if kind == "k8s:persistentvolumeclaims":
        policy = facts.get("reclaim_policy")
        if policy in ("Delete", "Recycle"):
            volume = f" {facts['volume']}" if facts.get("volume") else ""
            fate = "deleted" if policy == "Delete" else "scrubbed"
            return [f"its volume{volume} is {fate} with it (reclaim policy {policy})"]
        return []
    checks = _CHECKS.get(kind)
    return _all_off(facts, checks) if checks else []


def _bucket_because(facts: Mapping[str, Any]) -> list[str]:
    versioning = facts.get("versioning")
    if versioning not in ("Suspended", "Disabled") or facts.get("object_lock") is not False \
            or facts.get("replication") is not False:
        return []
    return [f"versioning is {versioning}", "no object lock", "no replication"]
