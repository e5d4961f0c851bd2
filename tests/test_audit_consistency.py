"""The audit's idea of each resource's environment is the labeler's (issue 18, item 3).

The audit (labelers/findings.py) recomputes labels from the rules instead of reading the stored evidence back, for
speed. Over generated estates (tags in every spelling, values that name nothing, configured environments,
declaring names, overrides on resources and on containers) committed through the real pipeline into a real SQLite
file, the environment the audit holds each resource to be (what ``Auditor.add`` returns, fed the audit's own
store stream) must equal the label the labeler (``labelers.resolve.Labeler``) stored; and the findings must agree
with those labels: every resource left unknown is named by a finding, no finding calls a labeled resource unlabeled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envlabel.config import config_from_dict
from envlabel.labelers.findings import CONFLICT, ORGANIZATION_KINDS, UNLABELED, UNRECOGNIZED, Auditor, Finding
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import UNKNOWN, Override, Resource, ScanResult
from envlabel.service.core.audit import audit_batches, auditor_for, run_audit
from envlabel.service.core.overrides import set_override
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.estates import T0

TAX = Taxonomy()
ENVS = list(TAX.environments)
NOW = T0 + timedelta(minutes=1)
#: canonical names, synonyms, first-token matches, and values that name nothing
VALUES = ["production", "Prod-EU", "prd", "staging", "uat", "pre-prod", "sandbox", "dev", "qa", "nonprod", "misc"]
KEYS = ["env", "Environment", "ENV", "stage", "deployment.environment.name", "owner"]
NAMES = ["orders", "orders-prod", "dev-box", "Production", "Sandbox", "staging-copy", "shared"]
PURE = settings(max_examples=150, deadline=None)
STORED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def node_id(i: int) -> str:
    return str(100_000_000_000 + i)  # a 12-digit account id: a valid override target


@st.composite
def estates(draw: st.DrawFn) -> tuple[list[Resource], dict[str, Override]]:
    """A forest of up to 12 resources (parents listed before children), and overrides on some of them."""
    size = draw(st.integers(min_value=1, max_value=12))
    nodes: list[Resource] = []
    for i in range(size):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        nodes.append(Resource(
            node_id(i), "aws", draw(st.sampled_from(["aws:account", "ec2:vpc", "s3:bucket", "aws:root"])),
            draw(st.sampled_from(NAMES)), None if parent is None else node_id(parent),
            draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)), "s",
            name_signal=draw(st.integers(0, 3)) == 0,
            declared=draw(st.sampled_from(ENVS)) if draw(st.integers(0, 5)) == 0 else None))
    overrides = {n.id: Override(n.id, draw(st.sampled_from(ENVS)), "r", "a", T0)
                 for n in nodes if draw(st.integers(0, 5)) == 0}
    return nodes, overrides


def containers_of(nodes: list[Resource]) -> dict[str, Resource]:
    parents = {n.parent for n in nodes}
    return {n.id: n for n in nodes if n.id in parents}


def ancestors(resource: Resource, by_id: dict[str, Resource]) -> Iterator[str]:
    node = resource.parent
    while node is not None:
        yield node
        node = by_id[node].parent


def assert_findings_agree_with_labels(nodes: list[Resource], labels: dict[str, str], found: list[Finding]) -> None:
    by_id = {n.id: n for n in nodes}
    unknown_reported = {f.target for f in found if f.kind in (UNLABELED, UNRECOGNIZED)}
    for n in nodes:
        if labels[n.id] != UNKNOWN or n.kind in ORGANIZATION_KINDS:
            continue
        assert unknown_reported & {n.id, *ancestors(n, by_id)}, f"{n.id} is unknown and no finding names it"
    for f in found:
        if f.kind == UNLABELED:
            assert labels[f.target] == UNKNOWN, f"{f.target} is reported unlabeled but labeled {labels[f.target]}"
        elif f.kind == CONFLICT and f.resource is not None:
            assert labels[f.target] == f.environment, f  # a conflict's expected environment is the label


@PURE
@given(estates())
def test_the_audit_holds_each_resource_to_the_labelers_environment(estate: tuple[list[Resource],
                                                                                 dict[str, Override]]) -> None:
    nodes, overrides = estate
    containers = containers_of(nodes)
    labeler = Labeler(TAX, containers, overrides)
    auditor = Auditor(TAX, containers, overrides)
    labels = {n.id: labeler.label(n).environment for n in nodes}
    audited = {n.id: auditor.add(n) for n in nodes}
    assert audited == labels
    assert_findings_agree_with_labels(nodes, labels, auditor.findings())


@contextmanager
def stored(nodes: list[Resource], overrides: dict[str, Override]) -> Iterator[Query]:
    """The estate committed as one complete scan into a fresh SQLite file, overrides set the way a person does."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'a.db'}"
        store = open_store(url)
        try:
            query = Query(config_from_dict({"store": url}), store)
            commit_scan(store, TAX, ScanResult("aws", nodes, scopes=frozenset({"s"})), T0, T0)
            for target, override in overrides.items():
                set_override(query, target, override.environment, reason="r", author="a", now=T0)
            yield query
        finally:
            store.close()


@STORED
@given(estates())
def test_the_stored_audit_stream_agrees_with_the_stored_labels(estate: tuple[list[Resource],
                                                                             dict[str, Override]]) -> None:
    nodes, overrides = estate
    with stored(nodes, overrides) as query:
        labels = {s.resource.id: s.resolution.environment for s in query.store.list_labels()
                  if s.resolution is not None}
        auditor = auditor_for(query, NOW)
        audited = {row.id: auditor.add(row, source, observed)
                   for batch in audit_batches(query) for row, source, observed in batch}
        assert audited == labels
        assert_findings_agree_with_labels(nodes, labels, run_audit(query, NOW))
