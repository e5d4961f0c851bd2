"""``envlabel decisions``: the decision log, read from the local store. Who did what to which target, what it was
decided as, which rule decided, and (``--would-block``) what audit mode let through that enforcement would stop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from envlabel.service.cli.kit import config_option, emit_json, get_config, open_configured_store
from envlabel.service.core.query import Query

#: the columns of the text table: (heading, field of the decision entry)
COLUMNS = (("TIME", "at"), ("PRINCIPAL", "principal"), ("INTERFACE", "interface"), ("DECISION", "decision"),
           ("ENVIRONMENT", "environment"), ("ACTION", "action"), ("TARGET", "target"), ("RULE", "rule"))


@click.command(name="decisions")
@click.option("--target", default=None, help="Only checks of this target (any of its ids).")
@click.option("--principal", default=None, help="Only checks by this principal (ci-deployer, user:alice).")
@click.option("--decision", type=click.Choice(["allow", "require_approval", "deny"]), default=None,
              help="Only checks decided so (in audit mode: what would have been enforced).")
@click.option("--since", default=None, metavar="TIME",
              help="Only checks since TIME: 2026-12-01T00:00:00Z, or a duration back from now (90m, 24h, 7d).")
@click.option("--would-block", "would_block", is_flag=True,
              help="What audit mode let through that enforcement would have stopped, per principal and "
                   "environment.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="At most this many, newest "
                                                                                     "first.")
@click.option("--json", "as_json", is_flag=True, help='{"decisions": [...], "next_cursor"}; with --would-block '
                                                      'the report {"since", "total", "by": [...]}.')
@config_option
def decisions_command(*, target: str | None, principal: str | None, decision: str | None, since: str | None,
                      would_block: bool, limit: int, as_json: bool) -> None:
    """The decision log: every check, by every interface, newest first."""
    from envlabel.service.core.decision_log import list_decisions, would_block_report

    query = Query(get_config(), open_configured_store())
    if would_block:
        report = would_block_report(query, since)
        if as_json:
            emit_json(report)
        else:
            click.echo(format_would_block(report))
        return
    page = list_decisions(query, target=target, principal=principal, decision=decision, since=since, limit=limit)
    if as_json:
        emit_json(page)
        return
    click.echo(format_decisions(page["decisions"]))
    if page.get("next_cursor"):
        click.echo(f"(more: raise --limit above {limit}, or narrow with --since / --target / --principal)")


def format_decisions(entries: Sequence[Mapping[str, Any]]) -> str:
    """The entries as a table whose columns line up; an audit-mode entry that would have blocked is marked."""
    if not entries:
        return "no decisions recorded (for these filters)"
    rows = [[heading for heading, _ in COLUMNS]]
    for entry in entries:
        row = [str(entry.get(field) if entry.get(field) is not None else "-") for _, field in COLUMNS]
        if entry.get("would_block"):
            row[3] += " (audit)"
        rows.append(row)
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` with every column padded to its widest cell (the last column is not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def format_would_block(report: Mapping[str, Any]) -> str:
    """The would-block report: per principal and environment, how many denials and approvals enforcement would
    have made."""
    since = f" since {report['since']}" if report.get("since") else ""
    by = report.get("by") or []
    if not by:
        return f"audit mode would have blocked nothing{since}"
    rows = [["PRINCIPAL", "ENVIRONMENT", "DENY", "REQUIRE_APPROVAL", "TOTAL"]]
    for group in by:
        counts = group.get("decisions") or {}
        deny, approve = int(counts.get("deny", 0)), int(counts.get("require_approval", 0))
        rows.append([str(group["principal"]), str(group["environment"]), str(deny), str(approve),
                     str(deny + approve)])
    return f"audit mode would have blocked {report.get('total', 0)} check(s){since}:\n" + table(rows)


ALL = [decisions_command]
