"""The read and scan commands: scan, get, list."""

from __future__ import annotations

import sys
from collections import Counter

import click

from envlabel.records import LabelRecord
from envlabel.service.cli.kit import (
    EXIT_NOT_FOUND,
    config_option,
    emit_json,
    fail,
    get_config,
    open_configured_store,
    parse_time,
)
from envlabel.service.core.pipeline import ScanSummary
from envlabel.service.core.query import Query


@click.command()
@click.option("--source", "source_names", multiple=True, help="Scan only this source (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
@config_option
def scan(source_names: tuple[str, ...], as_json: bool) -> None:
    """One discovery + labeling pass over every source (1 if any source failed; the others are saved)."""
    from envlabel.service.core.pipeline import run_source

    config = get_config()
    sources = [s for s in config.sources if not source_names or s.name in source_names]
    unknown = set(source_names) - {s.name for s in config.sources}
    if unknown:
        fail(f"no source named {', '.join(sorted(unknown))}; configured: "
             f"{', '.join(s.name for s in config.sources) or 'none'}", 2)
    if not sources:
        fail("no sources configured; add a sources: list to the config (see README, Configuration)")
    store = open_configured_store()
    summaries: list[ScanSummary] = []
    for source in sources:
        if not as_json and sys.stderr.isatty():
            click.echo(f"scanning {source.name} ({source.type})...", err=True)
        summaries.append(run_source(config, store, source))
    if as_json:
        emit_json([summary_json(s) for s in summaries])
    else:
        for s in summaries:
            click.echo(format_summary(s))
    if any(not s.complete for s in summaries):
        sys.exit(1)


def summary_json(s: ScanSummary) -> dict[str, object]:
    return {"source": s.source, "complete": s.complete, "resources": s.resources, "written": s.written,
            "removed": s.removed, "label_changes": s.label_changes, "held": s.held,
            "environments": dict(s.environments),
            "errors": [{"scope": e.scope, "message": e.message, "hint": e.hint} for e in s.errors],
            "seconds": round(s.seconds, 3)}


def format_summary(s: ScanSummary) -> str:
    held = f", {s.held} label(s) it could not see held, not relaxed" if s.held else ""
    status = "complete" if s.complete else f"INCOMPLETE ({len(s.errors)} error(s); nothing was removed{held})"
    envs = ", ".join(f"{env} {n}" for env, n in sorted(s.environments.items(), key=lambda kv: -kv[1]))
    lines = [f"{s.source}: {status}", f"  resources {s.resources} ({envs or 'none'})",
             f"  changed {s.written}, removed {s.removed}, label changes {s.label_changes}, {s.seconds:.1f}s"]
    lines += [f"  error in {e.scope}: {e.message}" + (f"\n    -> {e.hint}" if e.hint else "") for e in s.errors]
    return "\n".join(lines)


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the label JSON.")
@click.option("--at", "at", default=None, help="Answer as of this time (ISO 8601, e.g. 2026-01-31T12:00:00Z).")
@config_option
def get(target: str, as_json: bool, at: str | None) -> None:
    """The environment of TARGET with its evidence (exit 3 if never seen)."""
    query = Query(get_config(), open_configured_store())
    if at is not None:
        from envlabel.service.core.history import label_at

        body = label_at(query, target, parse_time(at))
    else:
        body = query.label(target)
    if as_json:
        emit_json(body)
    else:
        click.echo(format_label(body))
    if not body["found"]:
        sys.exit(EXIT_NOT_FOUND)


def format_label(body: LabelRecord) -> str:
    if not body["found"]:
        gone = f" (gone since {body['gone_at']})" if body.get("gone_at") else ""
        return (f"{body['target']}: unknown{gone} - never seen by a complete scan; "
                "treat it as production")
    flags = [f for f in ("conflict", "stale") if body[f]]
    head = f"{body['target']}: {body['environment']}" + (f" [{', '.join(flags)}]" if flags else "")
    lines = [head, f"  {body['kind']} {body['name']!r}, decided by {body['decided_by']}, "
             f"observed {body['observed_at']}"]
    evidence = body["evidence"]
    assert isinstance(evidence, list)
    lines += [f"  - {e['signal']}: {e['environment']} ({e['detail']})" for e in evidence]
    return "\n".join(lines)


@click.command(name="list")
@click.option("--environment", default=None, help="Only this environment (or unknown).")
@click.option("--provider", type=click.Choice(["aws", "gcp", "kubernetes"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@config_option
def list_command(environment: str | None, provider: str | None, as_json: bool) -> None:
    """Labeled resources, optionally filtered."""
    config = get_config()
    if environment and environment not in (*config.environments, "unknown"):
        fail(f"--environment must be one of {', '.join((*config.environments, 'unknown'))}", 2)
    store = open_configured_store()
    from envlabel.service.core.query import label_json

    query = Query(config, store)
    from envlabel.service.core.clock import utcnow

    now = utcnow()
    rows = [label_json(s.resource.id, s, s.resolution, query.is_stale(s, now))
            for s in store.list_labels(environment=environment, provider=provider)]
    if as_json:
        emit_json(rows)
        return
    counts = Counter(str(r["environment"]) for r in rows)
    for r in rows:
        flags = "".join(f" [{f}]" for f in ("conflict", "stale") if (r["conflict"] and f == "conflict")
                        or (r["stale"] and f == "stale"))
        click.echo(f"{r['environment']:<11} {r['kind']:<24} {r['target']}{flags}")
    click.echo(f"{len(rows)} resource(s): " + ", ".join(f"{e} {n}" for e, n in counts.most_common()))


ALL = [scan, get, list_command]
