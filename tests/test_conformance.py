"""Every labeling vector through the real normalization and resolution.

The project keeps its own copy in tests/conformance/labeling.yaml, so a fresh clone runs them
with nothing beside it. Where the contract's copy sits beside the checkout
(../shared/conformance/labeling.yaml), its cases run too, so a vector added there is run
before anyone copies it here."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from envlabel.labelers.resolve import Signals, resolve
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Evidence, Override

OWN = Path(__file__).resolve().parent / "conformance" / "labeling.yaml"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "labeling.yaml"


def _cases(section: str) -> list[Any]:
    """The section's cases from the own copy, then those of the shared copy (if present) it lacks."""
    own: list[Any] = yaml.safe_load(OWN.read_text())[section]
    if not SHARED.exists():
        return own
    extra = [case for case in yaml.safe_load(SHARED.read_text())[section] if case not in own]
    return [*own, *extra]


def test_own_copy_is_complete() -> None:
    """The shared vectors, when present, are all in the project's copy (copy new ones into tests/conformance/)."""
    if not SHARED.exists():
        pytest.skip("no ../shared/conformance beside this checkout: the project's own copy is all there is")
    shared, own = yaml.safe_load(SHARED.read_text()), yaml.safe_load(OWN.read_text())
    missing = {section: [c for c in cases if c not in own.get(section, [])] for section, cases in shared.items()}
    assert not any(missing.values()), f"copy these into {OWN}: {missing}"

TAXONOMY = Taxonomy()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("case", _cases("normalize"), ids=lambda c: repr(c["value"]))
def test_normalize(case: dict[str, Any]) -> None:
    match = TAXONOMY.normalize(case["value"])
    assert match.environment == case["environment"]
    if case["environment"] is not None:
        assert match.canonical == case["canonical"]


@pytest.mark.parametrize("case", _cases("keys"), ids=lambda c: c["key"])
def test_environment_keys(case: dict[str, Any]) -> None:
    assert TAXONOMY.is_environment_key(case["key"]) == case["environment_key"]


def _signals(node: dict[str, Any], node_id: str) -> Signals:
    tags = tuple(Evidence("tag", env, node_id, f"tag env={env}")
                 for env in [*node.get("tags", []), *node.get("signals", [])])
    names = (Evidence("name", node["name"], node_id, "name"),) if node.get("name") else ()
    override = (Override(node_id, node["override"], "vector", "conformance", NOW)
                if node.get("override") else None)
    return Signals(tags, names, override)


@pytest.mark.parametrize("case", _cases("resolve"), ids=lambda c: c["name"])
def test_resolve(case: dict[str, Any]) -> None:
    own = _signals(case["resource"], "resource")
    ancestors = [_signals(a, f"ancestor-{i}") for i, a in enumerate(case["ancestors"])]
    result = resolve(TAXONOMY, own, ancestors)
    expect = case["expect"]
    assert (result.environment, result.conflict, result.decided_by) == (
        expect["environment"], expect["conflict"], expect["decided_by"])
    if result.environment != "unknown":
        assert any(e.environment == result.environment and e.signal == result.decided_by
                   for e in result.evidence)
