"""``envlabel history TARGET``: the CLI of :mod:`envlabel.service.core.history`."""

from __future__ import annotations

import sys
from typing import Any

import click

from envlabel.service.cli.kit import EXIT_NOT_FOUND, config_option, emit_json, get_config, open_configured_store
from envlabel.service.core.history import history_json
from envlabel.service.core.query import Query


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the history as a JSON list.")
@config_option
def history(target: str, as_json: bool) -> None:
    """Every label change of TARGET, newest last (exit 3 if it has none)."""
    rows = history_json(Query(get_config(), open_configured_store()), target)
    if as_json:
        emit_json(rows)
    else:
        for row in rows:
            click.echo(format_entry(row))
        if not rows:
            click.echo(f"{target}: no label history - never seen by a scan")
    if not rows:
        sys.exit(EXIT_NOT_FOUND)


def format_entry(row: dict[str, Any]) -> str:
    if row["event"] == "gone":
        return f"{row['at']}  gone     {row['before']} -> (gone: a complete scan no longer saw it)"
    flags = " [conflict]" if row["conflict"] else ""
    until = f", until {row['valid_until']}" if row["valid_until"] else ""
    scan = f", scan {row['scan_id']}" if row["scan_id"] is not None else ", override/relabel"
    head = (f"{row['at']}  label    {row['before'] or '(none)'} -> {row['environment']}{flags}  "
            f"decided by {row['decided_by']}{scan}{until}")
    return "\n".join([head, *(f"    - {e['signal']}: {e['environment']} ({e['detail']})" for e in row["evidence"])])


ALL = [history]
