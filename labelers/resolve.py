"""Resolution: a resource's own signals plus its ancestors' -> one label.

The rules (DESIGN.md, "Resolution"): an override on the resource decides
outright. Otherwise collect the resource's own ``tag`` signals and its
ancestors' signals as ``inherited``, nearest first, up to and including the
nearest ancestor override, which hides everything above it. The label is the
most restrictive environment collected; disagreement sets ``conflict``;
``decided_by`` is the kind of the nearest signal asserting the result. Name
tokens are evidence only.

>>> t = Taxonomy()
>>> own = Signals(tags=(Evidence("tag", "sandbox", "db", "tag env=dev"),))
>>> account = Signals(tags=(Evidence("tag", "production", "222222222222", "tag env=prod"),))
>>> r = resolve(t, own, [account])
>>> (r.environment, r.decided_by, r.conflict)
('production', 'inherited', True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import (
    INHERITED,
    NAME,
    NONE,
    OVERRIDE,
    TAG,
    UNKNOWN,
    Evidence,
    Override,
    Resolution,
    Resource,
)


@dataclass(frozen=True, slots=True)
class Signals:
    """The signals one node carries about itself."""

    tags: tuple[Evidence, ...] = ()
    names: tuple[Evidence, ...] = ()
    override: Override | None = None

    def override_evidence(self) -> Evidence | None:
        o = self.override
        if o is None:
            return None
        until = f", expires {o.expires_at.isoformat()}" if o.expires_at else ""
        return Evidence(OVERRIDE, o.environment, o.target, f"override by {o.author}: {o.reason}{until}")


class Observed(Protocol):
    """What labeling reads of a resource: a :class:`Resource`, or a row the store read for labeling."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def name_signal(self) -> bool: ...
    @property
    def declared(self) -> str | None: ...
    @property
    def path(self) -> str: ...


#: (key, value, environment) of each environment tag that names an environment
TagMatches = Sequence[tuple[str, str, str]]
#: tag mappings whose matches a Labeler remembers (by identity: a relabel shares one mapping per tags text)
MATCHES_MEMO = 4096


def describe(resource: Observed) -> str:
    return f"{resource.kind} {resource.path or resource.name or resource.id}"


def environment_matches(taxonomy: Taxonomy, tags: Mapping[str, str]) -> TagMatches:
    """The environment tags of ``tags`` that name an environment, as (key, value, environment)."""
    if not tags:
        return ()
    return [(k, v, m.environment) for k, v, m in taxonomy.environment_tags(tags) if m.environment is not None]


def signals_of(resource: Observed, taxonomy: Taxonomy, override: Override | None = None,
               matches: TagMatches | None = None) -> Signals:
    """A resource's own signals: environment tags, configured environment, a declaring name. ``matches``: its
    tags' :func:`environment_matches`, when the caller has them."""
    if matches is None:
        matches = environment_matches(taxonomy, resource.tags)
    tags: list[Evidence] = []
    if matches:
        where = describe(resource)
        tags = [Evidence(TAG, env, resource.id, f"tag {key}={value} on {where}") for key, value, env in matches]
    if resource.declared:
        tags.append(Evidence(TAG, resource.declared, resource.id, f"configured environment of {describe(resource)}"))
    names: tuple[Evidence, ...] = ()
    if resource.name_signal:  # an OU or folder name is read like a tag value
        declared = taxonomy.normalize(resource.name).environment
        if declared is not None:
            tags.append(Evidence(TAG, declared, resource.id, describe(resource)))
    elif resource.name:
        said = taxonomy.name_environments(resource.name)
        if said:
            names = tuple(Evidence(NAME, env, resource.id, f"name {resource.name!r}")
                          for env in sorted(said, key=taxonomy.rank))
    return Signals(tuple(tags), names, override)


def _as_inherited(evidence: Evidence) -> Evidence:
    return replace(evidence, signal=INHERITED) if evidence.signal == TAG else evidence


@dataclass(frozen=True, slots=True)
class Chain:
    """What a container passes down: its signals and its ancestors', up to an override."""

    evidence: tuple[Evidence, ...]
    valid_until: datetime | None


EMPTY_CHAIN = Chain((), None)


def chain_of(node: Signals, above: Chain) -> Chain:
    """The chain a node hands to its children, given the chain handed to it."""
    override = node.override_evidence()
    if override is not None:  # an override replaces the node's own signals and hides everything above
        return Chain((override,), node.override.expires_at if node.override else None)
    return Chain(tuple(_as_inherited(e) for e in node.tags) + above.evidence, above.valid_until)


def resolve_chain(taxonomy: Taxonomy, own: Signals, above: Chain) -> Resolution:
    if own.override is not None:
        override = own.override_evidence()
        assert override is not None
        return Resolution(override.environment, OVERRIDE, False, (override, *own.names),
                          own.override.expires_at)
    collected = own.tags + above.evidence if own.tags else above.evidence
    if not collected:
        return Resolution(UNKNOWN, NONE, False, own.names, above.valid_until)
    head = collected[0]
    first = head.environment
    for e in collected:
        if e.environment != first:
            break
    else:  # the common case: every signal agrees
        return Resolution(first, head.signal, False, collected + own.names if own.names else collected,
                          above.valid_until)
    environment = taxonomy.most_restrictive(e.environment for e in collected)
    decided_by = next(e.signal for e in collected if e.environment == environment)
    return Resolution(environment, decided_by, True, collected + own.names, above.valid_until)


def resolve(taxonomy: Taxonomy, own: Signals, ancestors: Sequence[Signals]) -> Resolution:
    """Resolve with ``ancestors`` listed nearest first."""
    chain = EMPTY_CHAIN
    for node in reversed(ancestors):
        chain = chain_of(node, chain)
    return resolve_chain(taxonomy, own, chain)


class Labeler:
    """Labels resources of an estate whose containers are known.

    ``containers`` maps id -> Resource for every resource that is some
    resource's parent; their chains are computed once and shared by all
    their descendants, so labeling is one dictionary walk per resource.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        containers: Mapping[str, Resource],
        overrides: Mapping[str, Override],
    ) -> None:
        self.taxonomy = taxonomy
        self.containers = containers
        self.overrides = overrides
        self._chains: dict[str, Chain] = {}
        #: id of a tags mapping -> (the mapping, kept so the id stays its own; its environment matches)
        self._matches: dict[int, tuple[Mapping[str, str], TagMatches]] = {}

    def chain(self, container_id: str | None) -> Chain:
        if container_id is None:
            return EMPTY_CHAIN
        cached = self._chains.get(container_id)
        if cached is not None:
            return cached
        # Walk up iteratively (deep trees must not recurse), then fill the memo downwards.
        path: list[str] = []
        seen: set[str] = set()
        node: str | None = container_id
        while node is not None and node not in self._chains and node not in seen:
            seen.add(node)
            path.append(node)
            parent = self.containers.get(node)
            node = parent.parent if parent is not None else None
        above = self._chains.get(node, EMPTY_CHAIN) if node is not None else EMPTY_CHAIN
        for node_id in reversed(path):
            resource = self.containers.get(node_id)
            override = self.overrides.get(node_id)
            # a parent never observed (yet): only an override can speak for it
            signals = Signals(override=override) if resource is None else signals_of(resource, self.taxonomy, override)
            above = chain_of(signals, above)
            self._chains[node_id] = above
        return self._chains[container_id]

    def label(self, resource: Observed) -> Resolution:
        return resolve_chain(self.taxonomy, *self.parts(resource))

    def parts(self, resource: Observed) -> tuple[Signals, Chain]:
        """What :meth:`label` resolves: the resource's own signals and the chain its parent hands down (shared by
        all the parent's children: its evidence can be encoded once for all of them).

        Resources sharing one tags mapping (a relabel reads one per distinct tags text) share its environment
        matches; a mapping must not change while a Labeler labels it."""
        tags = resource.tags
        matches: TagMatches = ()
        if tags:
            known = self._matches.get(id(tags))
            if known is None or known[0] is not tags:
                if len(self._matches) >= MATCHES_MEMO:
                    self._matches.clear()
                known = self._matches[id(tags)] = (tags, environment_matches(self.taxonomy, tags))
            matches = known[1]
        return (signals_of(resource, self.taxonomy, self.overrides.get(resource.id), matches),
                self.chain(resource.parent))
