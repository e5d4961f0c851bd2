"""The live labels an exporter reads: each stored resource of a provider with the environment it is enforced as.

An exporter protects what the check would protect, so a resource whose label is not authoritative
(``unknown``: no signal, or not labeled yet; or stale: older than ``stale_after``) is enforced as the most
restrictive environment, as every check decides it (the same rule as ``aws-scp``). A daemon that scans on
schedule keeps labels fresh, so a re-export only changes when the labels (or their freshness) do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from envlabel.service.core.clock import utcnow
from envlabel.service.core.query import Query

#: resources read from the store per page, so an estate of millions is never in memory at once
PAGE = 5000


@dataclass(frozen=True, slots=True)
class Labeled:
    """One live resource as an exporter sees it."""

    id: str
    kind: str
    name: str
    parent: str | None
    #: the stored label's environment (``unknown`` when there is none)
    label: str
    #: the environment it is enforced as: ``label``, or the most restrictive one when not authoritative
    environment: str
    #: what decided the label (``tag``, ``inherited``, ``override``, ``none``)
    decided_by: str
    #: the label is older than ``stale_after``
    stale: bool = False

    def describe(self) -> str:
        """The label as a refusal or description cites it: ``production``, ``unknown (enforced as production)``."""
        if self.label == self.environment and not self.stale:
            return self.label
        return f"{'stale ' if self.stale else ''}{self.label} (enforced as {self.environment})"


def iter_labeled(query: Query, provider: str, kinds: frozenset[str] | None = None) -> Iterator[Labeled]:
    """Every live resource of ``provider`` (of ``kinds`` when given), in id order, with its current label
    (an override that lapsed since the last pass is already undone, as ``envlabel get`` would show)."""
    strictest = query.config.environments[0]
    now = utcnow()
    after = ""
    while True:
        page = query.store.list_labels(provider=provider, after=after, limit=PAGE)
        for stored in page:
            r = stored.resource
            if kinds is not None and r.kind not in kinds:
                continue
            record = query.answer(r.id, r.provider, stored, now)
            label = record["environment"]
            yield Labeled(r.id, r.kind, r.name, r.parent, label,
                          label if record["authoritative"] else strictest, record["decided_by"], record["stale"])
        if len(page) < PAGE:
            return
        after = page[-1].resource.id
