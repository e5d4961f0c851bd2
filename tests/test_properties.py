"""Properties of resolution (labelers/resolve.py) and of the store, checked over generated estates.

Example counts are modest so the suite stays fast; each store example uses its own SQLite file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envlabel.config import config_from_dict
from envlabel.labelers.resolve import Labeler, resolve, signals_of
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import NAME, NONE, UNKNOWN, Override, Resolution, Resource, ScanResult
from envlabel.service.core.history import label_at
from envlabel.service.core.overrides import set_override
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.estates import T0

TAX = Taxonomy()
ENVS = list(TAX.environments)
#: tag values: canonical names, synonyms, first-token matches and values that match nothing
VALUES = ["production", "Prod-EU", "prd", "staging", "uat", "pre-prod", "sandbox", "dev", "qa", "nonprod", "misc"]
PURE = settings(max_examples=60, deadline=None)
STORED = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def node_id(i: int) -> str:
    return str(100_000_000_000 + i)  # a 12-digit account id: a valid target


tags = st.dictionaries(st.sampled_from(["env", "Environment", "stage", "owner"]), st.sampled_from(VALUES),
                       max_size=2)


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[Resource], dict[str, Override]]:
    """A resource (index 0) and its ancestors, nearest first, with some overrides along the way."""
    depth = draw(st.integers(min_value=1, max_value=5))
    nodes = [Resource(node_id(i), "aws", "x", draw(st.sampled_from(["orders", "orders-prod", "dev-box"])),
                      node_id(i + 1) if i + 1 < depth else None, draw(tags), "s",
                      name_signal=i > 0 and draw(st.booleans()))
             for i in range(depth)]
    overrides = {n.id: Override(n.id, draw(st.sampled_from(ENVS)), "r", "a", T0)
                 for n in nodes if draw(st.integers(0, 4)) == 0}
    return nodes, overrides


def label(nodes: list[Resource], overrides: dict[str, Override]) -> Resolution:
    return Labeler(TAX, {n.id: n for n in nodes[1:]}, overrides).label(nodes[0])


@PURE
@given(chains(), st.integers(min_value=0, max_value=4), st.sampled_from(ENVS))
def test_adding_a_signal_never_makes_a_label_less_restrictive(
        chain: tuple[list[Resource], dict[str, Override]], where: int, extra: str) -> None:
    nodes, overrides = chain
    where = where % len(nodes)
    before = label(nodes, overrides)
    tagged = list(nodes)
    tagged[where] = replace(nodes[where], tags={**nodes[where].tags, "deployment.environment.name": extra})
    after = label(tagged, overrides)
    assert TAX.rank(after.environment) <= TAX.rank(before.environment)
    # visible unless an override at or below the tagged node speaks instead
    visible = not any(n.id in overrides for n in nodes[:where + 1])
    if visible and TAX.rank(extra) < TAX.rank(before.environment):
        assert after.environment == extra


@PURE
@given(chains())
def test_every_label_carries_evidence_for_its_environment(chain: tuple[list[Resource], dict[str, Override]]) -> None:
    nodes, overrides = chain
    result = label(nodes, overrides)
    deciding = [e for e in result.evidence if e.signal != NAME]
    if result.environment == UNKNOWN:
        assert (result.decided_by, deciding) == (NONE, [])
    else:
        asserting = [e for e in deciding if e.environment == result.environment]
        assert asserting and asserting[0].signal == result.decided_by
        assert result.conflict == any(e.environment != result.environment for e in deciding)
    if nodes[0].id in overrides:
        assert result.environment == overrides[nodes[0].id].environment


@PURE
@given(chains())
def test_the_shared_chain_memo_agrees_with_resolving_each_path(
        chain: tuple[list[Resource], dict[str, Override]]) -> None:
    nodes, overrides = chain
    labeler = Labeler(TAX, {n.id: n for n in nodes[1:]}, overrides)
    for i in range(len(nodes) - 1, -1, -1):  # parents first, so the memo is warm for the children
        own = signals_of(nodes[i], TAX, overrides.get(nodes[i].id))
        ancestors = [signals_of(n, TAX, overrides.get(n.id)) for n in nodes[i + 1:]]
        assert labeler.label(nodes[i]) == resolve(TAX, own, ancestors)


@st.composite
def trees(draw: st.DrawFn) -> list[Resource]:
    size = draw(st.integers(min_value=2, max_value=10))
    parents = [None, *(draw(st.one_of(st.none(), st.integers(0, i - 1))) for i in range(1, size))]
    return [Resource(node_id(i), "aws", "x", f"n{i}", None if p is None else node_id(p), draw(tags), "s")
            for i, p in enumerate(parents)]


@contextmanager
def stored_query() -> Iterator[Query]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'p.db'}")
        try:
            yield Query(config_from_dict({"store": f"sqlite:///{Path(tmp) / 'p.db'}"}), store)
        finally:
            store.close()


def snapshot(query: Query) -> dict[str, Resolution | None]:
    return {s.resource.id: s.resolution for s in query.store.list_labels()}


@STORED
@given(trees(), st.data())
def test_a_container_override_changes_exactly_its_subtree(estate: list[Resource], data: st.DataObject) -> None:
    root = data.draw(st.sampled_from(estate))
    environment = data.draw(st.sampled_from(ENVS))
    below = {root.id}
    for r in estate:  # parents come before children in a generated tree
        if r.parent in below:
            below.add(r.id)
    with stored_query() as query:
        commit_scan(query.store, TAX, ScanResult("aws", estate), T0, T0)
        before = snapshot(query)
        set_override(query, root.id, environment, reason="r", author="a", now=T0)
        after = snapshot(query)
    for r in estate:
        if r.id not in below:
            assert after[r.id] == before[r.id], r.id
            continue
        res = after[r.id]
        assert res is not None
        assert any(e.signal == "override" and e.source == root.id for e in res.evidence)
        assert TAX.rank(res.environment) <= TAX.rank(environment)
    assert (after[root.id].environment, after[root.id].decided_by) == (environment, "override")  # type: ignore[union-attr]


@STORED
@given(st.sampled_from(VALUES), st.sampled_from(VALUES), st.integers(1, 600), st.integers(0, 600))
def test_get_at_returns_the_label_before_and_after_a_change(first: str, second: str, gap: int, probe: int) -> None:
    changed_at = T0 + timedelta(minutes=gap)
    target = node_id(0)
    with stored_query() as query:
        labels = []
        for moment, value in ((T0, first), (changed_at, second)):
            commit_scan(query.store, TAX, ScanResult("aws", [Resource(target, "aws", "x", "db", None,
                                                                      {"env": value}, "s")]), moment, moment)
            labels.append(query.label(target, now=moment))
        assert label_at(query, target, T0 - timedelta(seconds=1))["found"] is False
        for moment, expected in ((T0 + timedelta(minutes=probe) if probe < gap else T0, labels[0]),
                                 (changed_at + timedelta(minutes=probe), labels[1])):
            past = label_at(query, target, moment)
            assert (past["environment"], past["evidence"], past["conflict"]) == (
                expected["environment"], expected["evidence"], expected["conflict"])
