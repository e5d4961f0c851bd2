"""The check as a use case: the label of the target from the store, decided by the pure rule.

The rule (classification, policy, fail-closed environment, reasons) is :func:`envlabel.labelers.decision.decide`;
this module only looks the target up, so the CLI, HTTP and MCP all answer through :func:`check`.
"""

from __future__ import annotations

from envlabel.labelers.decision import decide
from envlabel.records import CheckRecord
from envlabel.service.core.query import Query


def check(query: Query, target: str, action: str) -> CheckRecord:
    """The check JSON for ``action`` on ``target`` (raises TargetError if the target is malformed)."""
    return decide(query.config, action, query.label(target))
