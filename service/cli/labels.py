"""The read and scan commands: scan, get, list."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

import click

from envlabel.model import NAME, UNKNOWN
from envlabel.records import LabelRecord, PathNodeRecord
from envlabel.service.cli.decisions import table
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
from envlabel.store.records import StoredLabel
from envlabel.store.sql import Store


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
            "seconds": round(s.total_seconds, 3), "scan_seconds": round(s.discovery_seconds, 3),
            "commit_seconds": round(s.seconds, 3)}


def format_summary(s: ScanSummary) -> str:
    held = f", {s.held} label(s) it could not see held, not relaxed" if s.held else ""
    status = "complete" if s.complete else f"INCOMPLETE ({len(s.errors)} error(s); nothing was removed{held})"
    envs = ", ".join(f"{env} {n}" for env, n in sorted(s.environments.items(), key=lambda kv: -kv[1]))
    lines = [f"{s.source}: {status}", f"  resources {s.resources} ({envs or 'none'})",
             f"  changed {s.written}, removed {s.removed}, label changes {s.label_changes}, "
             f"{s.total_seconds:.1f}s (scan {s.discovery_seconds:.1f}s, commit {s.seconds:.1f}s)"]
    lines += [f"  error in {e.scope}: {e.message}" + (f"\n    -> {e.hint}" if e.hint else "") for e in s.errors]
    return "\n".join(lines)


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the label JSON, with its evidence chain as path.")
@click.option("--at", "at", default=None, help="Answer as of this time (ISO 8601, e.g. 2026-01-31T12:00:00Z).")
@config_option
def get(target: str, as_json: bool, at: str | None) -> None:
    """The environment of TARGET with its evidence and the containers above it (exit 3 if never seen)."""
    config = get_config()
    query = Query(config, open_configured_store())
    if at is not None:  # the containers as they are now may not be those of then: no path
        from envlabel.service.core.history import label_at

        body = label_at(query, target, parse_time(at))
    else:
        from envlabel.service.core.explain import explain

        body = explain(query, target)
    if as_json:
        emit_json(body)
    else:
        click.echo(format_label(body, config.environments))
    if not body["found"]:
        sys.exit(EXIT_NOT_FOUND)


def format_label(body: LabelRecord, environments: Sequence[str] = ()) -> str:
    """The label as a person reads it: the answer, why, and the chain of containers it was read from."""
    path = body.get("path") or []
    lines = [headline(body), *describe_target(body), *unread_lines(path, environments)]
    if path:
        lines += ["  path (the target first, then each container above it):", indent(format_path(path), 4)]
    return "\n".join(lines)


def headline(body: LabelRecord) -> str:
    """The first line: the environment (``unknown`` alone when seen, so it reads like any other answer; a target
    gone or never seen says so, and that it is treated as production)."""
    if not body["found"]:
        if body.get("gone_at"):
            return (f"{body['target']}: unknown - gone since {body['gone_at']} (a complete scan no longer sees "
                    "it); treated as production")
        return f"{body['target']}: unknown - never seen by a complete scan; treated as production"
    flags = [f for f in ("conflict", "stale") if body[f]]
    return f"{body['target']}: {body['environment']}" + (f" [{', '.join(flags)}]" if flags else "")


def describe_target(body: LabelRecord) -> list[str]:
    """What the target is and the evidence that decided (a gone target: what it was and where)."""
    if not body["found"]:
        if not body.get("kind"):
            return ["  check the spelling (envlabel list shows what is known), or scan its source (envlabel scan)"]
        return [f"  was {body['kind']} {body['name']!r}" + (f" in {body['parent']}" if body["parent"] else "")]
    if body["environment"] == UNKNOWN:
        lines = ["  treated as production: no environment signal on it or on any container above it",
                 f"  {body['kind']} {body['name']!r}, observed {body['observed_at']}"]
    else:
        lines = [f"  {body['kind']} {body['name']!r}, decided by {body['decided_by']}, "
                 f"observed {body['observed_at']}"]
    lines += [f"  - {e['signal']}: {e['environment']} ({e['detail']})" for e in body["evidence"]]
    return lines


def unread_lines(path: Sequence[PathNodeRecord], environments: Sequence[str]) -> list[str]:
    """Environment tags seen on the chain whose value names no environment, with what to do about each."""
    known = f" ({', '.join(environments)})" if environments else ""
    return [f"  seen but not read: {tag} on {node_title(node)} names no environment{known}; "
            "fix the tag, or add the value to synonyms: in the config"
            for node in path for tag in node["unread"]]


def format_path(path: Sequence[PathNodeRecord]) -> str:
    """One aligned row per container: what it is, and its own signal or "no signal"."""
    return table([[node_title(node), node_signal(node)] for node in path])


def node_title(node: PathNodeRecord) -> str:
    """``aws:account orders-prod (222222222222)``: the kind and human name, with the id when it is short
    (an account, a project number); ARNs and cluster paths are in the JSON."""
    if not node["found"]:
        return f"{node['id']} (never observed)"
    name = node["name"] or node["id"]
    short = node["id"] != name and "://" not in node["id"] and not node["id"].startswith("arn:")
    return f"{node['kind']} {name}" + (f" ({node['id']})" if short else "")


def node_signal(node: PathNodeRecord) -> str:
    """The node's own signals (``production: tag env=prd``), or "no signal"; names are evidence only."""
    deciding = [e for e in node["signals"] if e["signal"] != NAME]
    names = [e for e in node["signals"] if e["signal"] == NAME]
    said = "; ".join(f"{e['environment']}: {short_detail(e['detail'], node)}" for e in deciding) or "no signal"
    if names:
        said += " (" + ", ".join(f"{e['detail']} suggests {e['environment']}" for e in names) + "; evidence only)"
    if node["hidden"]:
        said += " - not counted: an override below hides it"
    return said


def short_detail(detail: str, node: PathNodeRecord) -> str:
    """An evidence detail without the " on <kind> <name>" the row already shows; a declaring name (an OU or
    folder called Production, whose evidence is its kind and path) reads as such."""
    if node["kind"] and detail.startswith(f"{node['kind']} "):
        return f"its name ({detail[len(node['kind']) + 1:]})"
    for suffix in (f" on {node['kind']} {node['name']}", f" of {node['kind']} {node['name']}"):
        if node["name"] and detail.endswith(suffix):
            return detail[:-len(suffix)]
    return detail


def indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


@click.command(name="list")
@click.option("--environment", default=None, help="Only this environment (or unknown).")
@click.option("--provider", type=click.Choice(["aws", "gcp", "kubernetes"]), default=None)
@click.option("--wide", is_flag=True, help="Also show how each label was decided, when, and the container it is in.")
@click.option("--json", "as_json", is_flag=True)
@config_option
def list_command(environment: str | None, provider: str | None, wide: bool, as_json: bool) -> None:
    """Labeled resources, optionally filtered, with their human names."""
    config = get_config()
    if environment and environment not in (*config.environments, "unknown"):
        fail(f"--environment must be one of {', '.join((*config.environments, 'unknown'))}", 2)
    store = open_configured_store()
    from envlabel.service.core.clock import utcnow
    from envlabel.service.core.query import label_json

    query = Query(config, store)
    now = utcnow()
    stored = store.list_labels(environment=environment, provider=provider)
    rows = [label_json(s.resource.id, s, s.resolution, query.is_stale(s, now)) for s in stored]
    if as_json:
        emit_json(rows)
        return
    if rows:
        click.echo(format_listing(rows, parent_names(store, stored) if wide else None))
    counts = Counter(str(r["environment"]) for r in rows)
    click.echo(f"{len(rows)} resource(s): " + ", ".join(f"{e} {n}" for e, n in counts.most_common()))


def parent_names(store: Store, stored: Sequence[StoredLabel]) -> dict[str, str]:
    """id -> human name of every container the listed resources sit in (those not listed read in one go)."""
    names = {s.resource.id: s.resource.path or s.resource.name for s in stored}
    missing = sorted({p for s in stored if (p := s.resource.parent) is not None and p not in names})
    names |= {i: s.resource.path or s.resource.name for i, s in store.get_many(missing).items()}
    return names


def format_listing(rows: Sequence[LabelRecord], parents: dict[str, str] | None) -> str:
    """The listing as an aligned table: environment, kind, human name, target; ``parents``: the wide one."""
    heading = ["ENVIRONMENT", "KIND", "NAME", "TARGET"]
    if parents is not None:
        heading += ["DECIDED_BY", "OBSERVED", "IN"]
    cells = [heading]
    for r in rows:
        flags = "".join(f" [{f}]" for f in ("conflict", "stale") if r[f])
        row = [r["environment"], r["kind"] or "", r["name"] or "", r["target"] + flags]
        if parents is not None:
            parent = r["parent"]
            within = "-" if parent is None else (f"{parents[parent]} ({parent})" if parents.get(parent) else parent)
            row += [r["decided_by"], r["observed_at"] or "-", within]
        cells.append(row)
    return table(cells)


ALL = [scan, get, list_command]
