"""Where people read ``recovery``: the CLI check output, the approval notification and the approval page.

The renderings are pure functions of the check JSON; these tests feed them the three verdicts and a hostile
snapshot name (a snapshot id is the estate's text: anyone who may create a snapshot names it). The end-to-end
path (scan, check, guard, approval) is tests/test_recovery_incident.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from envlabel.records import CheckRecord, RecoveryRecord
from envlabel.service.cli.agents import format_check
from envlabel.service.core.approvals import approval_message
from envlabel.service.http.page import recovery_rows

TARGET = "arn:aws:rds:us-east-1:222222222222:db:orders-db"
IRREVERSIBLE: RecoveryRecord = {"reversible": False, "why": ["deletion protection is off", "SkipFinalSnapshot is true"],
                                "how": None, "loses": "the database and every row in it", "destroys_data": False}
RECOVERABLE: RecoveryRecord = {"reversible": True, "why": ["a manual snapshot exists"],
                               "how": "restore from snapshot orders-db-manual-1 (taken 3 h ago)",
                               "loses": "data written since 2026-12-01T03:00:00Z", "destroys_data": False}
UNKNOWN: RecoveryRecord = {"reversible": "unknown", "why": ["backup retention could not be read (AccessDenied)"],
                           "how": None, "loses": None, "destroys_data": False}
DESTROYS: RecoveryRecord = {"reversible": False, "why": ["BackupRetentionPeriod=0 deletes every automated backup"],
                            "how": None, "loses": "every automated backup", "destroys_data": True}


def check_with(recovery: RecoveryRecord | None) -> CheckRecord:
    check: CheckRecord = {
        "target": TARGET, "action": "rds:DeleteDBInstance", "action_class": "delete", "environment": "staging",
        "decision": "require_approval", "reversible": recovery is not None and recovery["reversible"] is True,
        "reasons": ["policy: delete in staging is require_approval"], "approvers": ["orders-oncall"],
        "label": {"target": TARGET, "name": "orders-db", "kind": "rds:db", "environment": "staging"},  # type: ignore
        "understood_as": "rds:DeleteDBInstance", "rule": "policy.staging.delete",
    }
    if recovery is not None:
        check["recovery"] = recovery
    return check


def approval_of(check: CheckRecord) -> dict[str, Any]:
    return {"id": "apr-1", "status": "pending", "principal": "agent-7", "action": "rds:DeleteDBInstance",
            "target": TARGET, "target_id": TARGET, "environment": "staging", "check": check,
            "parameters_digest": "0" * 64, "created_at": "2026-12-01T12:00:00Z", "expires_at": "2026-12-01T13:00:00Z",
            "decided_by": None, "decision_reason": None}


@pytest.mark.parametrize(("recovery", "expected"), [
    (IRREVERSIBLE, ["  recovery: IRREVERSIBLE: deletion protection is off; SkipFinalSnapshot is true",
                    "    loses: the database and every row in it"]),
    (RECOVERABLE, ["  recovery: recoverable: a manual snapshot exists",
                   "    how: restore from snapshot orders-db-manual-1 (taken 3 h ago)",
                   "    loses: data written since 2026-12-01T03:00:00Z"]),
    (UNKNOWN, ["  recovery: unknown (treated as irreversible): backup retention could not be read (AccessDenied)"]),
    (DESTROYS, ["  recovery: IRREVERSIBLE: BackupRetentionPeriod=0 deletes every automated backup",
                "    loses: every automated backup", "    this change destroys data: it is decided as a delete"]),
])
def test_the_cli_says_whether_it_can_be_undone_right_under_the_decision(recovery: RecoveryRecord,
                                                                         expected: list[str]) -> None:
    lines = format_check(check_with(recovery)).splitlines()
    assert lines[2:2 + len(expected)] == expected  # after the decision and the rule, before the reasons
    assert lines[2 + len(expected)].startswith("  - policy:")


def test_the_cli_without_recovery_prints_no_recovery_line() -> None:
    assert "recovery:" not in format_check(check_with(None))


def test_the_notification_puts_reversibility_in_the_facts_block() -> None:
    message = approval_message(approval_of(check_with(IRREVERSIBLE)), None)  # type: ignore[arg-type]
    facts = message["blocks"][1]["text"]["text"]
    assert "*Reversible:* *no* — it cannot be undone: deletion protection is off; SkipFinalSnapshot is true" in facts
    assert "*Would lose:* the database and every row in it" in facts
    recoverable = approval_message(approval_of(check_with(RECOVERABLE)), None)["text"]  # type: ignore[arg-type]
    assert "*Reversible:* yes — restore from snapshot orders-db-manual-1 (taken 3 h ago)" in recoverable
    unknown = approval_message(approval_of(check_with(UNKNOWN)), None)["text"]  # type: ignore[arg-type]
    assert "*Reversible:* *unknown* — treated as irreversible: backup retention could not be read" in unknown
    destroys = approval_message(approval_of(check_with(DESTROYS)), None)["text"]  # type: ignore[arg-type]
    assert "*Destroys data:* this change is decided as a delete" in destroys


def test_a_hostile_snapshot_name_is_text_in_the_notification_and_on_the_page() -> None:
    hostile: RecoveryRecord = {**RECOVERABLE, "how": "restore from snapshot <!channel> <https://evil.example|ok>\n"
                                                      "*Approved* by sre"}
    text = approval_message(approval_of(check_with(hostile)), None)["text"]  # type: ignore[arg-type]
    assert "<!channel>" not in text and "<https://evil" not in text and "&lt;!channel&gt;" in text
    assert "\n*Approved* by sre" not in text
    html = "".join(recovery_rows(check_with({**hostile, "how": "restore from <script>alert(1)</script>"})))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_page_shows_no_and_unknown_in_red_with_why() -> None:
    irreversible = "".join(recovery_rows(check_with(IRREVERSIBLE)))
    assert "<span class=irreversible>NO: this cannot be undone</span> (deletion protection is off; " in irreversible
    assert "<th>Would lose</th><td>the database and every row in it</td>" in irreversible
    unknown = "".join(recovery_rows(check_with(UNKNOWN)))
    assert "<span class=irreversible>UNKNOWN: treated as irreversible</span>" in unknown
    recoverable = "".join(recovery_rows(check_with(RECOVERABLE)))
    assert "<th>Reversible</th><td>yes: restore from snapshot orders-db-manual-1 (taken 3 h ago)</td>" in recoverable
    assert "<th>Why</th><td>a manual snapshot exists</td>" in recoverable
    old = "".join(recovery_rows(check_with(None)))  # a request made before recovery existed
    assert "NO: this cannot be undone" in old
