"""Every vector of ../shared/conformance/labeling.yaml through the real normalization and resolution."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from envlabel.model import Evidence, Override
from labelers.resolve import Signals, resolve
from labelers.taxonomy import Taxonomy


def _vectors_path() -> Path:
    here = Path(__file__).resolve()
    for base in (here.parents[1], *here.parents[1].parents):
        candidate = base / "shared" / "conformance" / "labeling.yaml"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("shared/conformance/labeling.yaml not found beside the checkout")


VECTORS: dict[str, Any] = yaml.safe_load(_vectors_path().read_text())
TAXONOMY = Taxonomy()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("case", VECTORS["normalize"], ids=lambda c: repr(c["value"]))
def test_normalize(case: dict[str, Any]) -> None:
    match = TAXONOMY.normalize(case["value"])
    assert match.environment == case["environment"]
    if case["environment"] is not None:
        assert match.canonical == case["canonical"]


@pytest.mark.parametrize("case", VECTORS["keys"], ids=lambda c: c["key"])
def test_environment_keys(case: dict[str, Any]) -> None:
    assert TAXONOMY.is_environment_key(case["key"]) == case["environment_key"]


def _signals(node: dict[str, Any], node_id: str) -> Signals:
    tags = tuple(Evidence("tag", env, node_id, f"tag env={env}")
                 for env in [*node.get("tags", []), *node.get("signals", [])])
    names = (Evidence("name", node["name"], node_id, "name"),) if node.get("name") else ()
    override = (Override(node_id, node["override"], "vector", "conformance", NOW)
                if node.get("override") else None)
    return Signals(tags, names, override)


@pytest.mark.parametrize("case", VECTORS["resolve"], ids=lambda c: c["name"])
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
