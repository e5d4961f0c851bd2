"""``envlabel audit``: the CLI of :mod:`envlabel.service.core.audit` (``--fail-on`` makes it a CI gate)."""

from __future__ import annotations

import sys

import click

from envlabel.labelers.findings import KINDS, SEVERITIES
from envlabel.service.cli.kit import config_option, emit_json, get_config, open_configured_store
from envlabel.service.core.audit import FORMATS, PROVIDERS, findings, render, summary
from envlabel.service.core.clock import utcnow
from envlabel.service.core.query import Query


@click.command()
@click.option("--format", "output", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--kind", type=click.Choice(KINDS), default=None, help="Only findings of this kind.")
@click.option("--severity", type=click.Choice(SEVERITIES), default=None, help="Only findings at or above this.")
@click.option("--provider", type=click.Choice(PROVIDERS), default=None)
@click.option("--fail-on", "fail_on", type=click.Choice(SEVERITIES), default=None,
              help="Exit 1 when a reported finding is at or above this severity (a CI gate). high: a target left "
                   "unknown or production reading as another environment; low: spellings (docs/audit.md).")
@config_option
def audit(output: str, kind: str | None, severity: str | None, provider: str | None, fail_on: str | None) -> None:
    """Mislabeled, unlabeled, conflicting, stale and unrecoverable resources, each with the command that fixes it."""
    now = utcnow()
    rows = findings(Query(get_config(), open_configured_store()), kind=kind, severity=severity, provider=provider,
                    now=now)
    if output == "json":
        emit_json(rows)
    else:
        click.echo(render(rows, output, now))
    if fail_on is not None and any(SEVERITIES.index(r["severity"]) <= SEVERITIES.index(fail_on) for r in rows):
        if output != "table":
            click.echo(f"envlabel: audit failed: findings at or above {fail_on} ({summary(rows)})", err=True)
        sys.exit(1)


ALL = [audit]
