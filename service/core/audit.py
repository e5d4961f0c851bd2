"""The audit: mislabeled, unlabeled, conflicting, stale and unrecoverable resources, one finding per fix.

``findings(query, ...)`` is what the CLI, the HTTP API (``GET /v1/findings``)
and the MCP tool ``list_findings`` return. The rules live in
``labelers.findings``; this module streams the store through them, attaches
the command that applies each fix, and renders table, JSON, Markdown or
SARIF 2.1.0. ``envlabel audit --fail-on high`` is a CI gate.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from envlabel.labelers.findings import KINDS, SEVERITIES, UNRECOVERABLE, Auditor, Finding
from envlabel.labelers.remediation import recovery_command, rescan_command, tag_command
from envlabel.service.core.clock import utcnow
from envlabel.service.core.gc_pause import gc_paused_if_large
from envlabel.service.core.query import Query
from envlabel.store.codec import ts
from envlabel.store.records import AuditRow

PROVIDERS = ("aws", "gcp", "kubernetes")
FORMATS = ("table", "json", "markdown", "sarif")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_SARIF_LEVEL = {"high": "error", "medium": "warning", "low": "note"}
#: a rule's default level: the severity its findings always have, else warning (docs/audit.md, "Severity")
_SARIF_DEFAULT = {"unlabeled": "error", "unrecoverable": "error", "non-canonical": "note"}
_RULES = {
    "conflict": "A resource's own environment tag disagrees with a container it is in.",
    "ambiguous": "Several environment tags on one resource disagree.",
    "unlabeled": "No environment signal of its own or from a container: agents must treat it as production.",
    "non-canonical": "An environment tag value is understood but is not the environment's canonical name.",
    "unrecognized": "An environment tag value names no environment.",
    "name-mismatch": "The name says another environment than the label.",
    "stale": "Labels older than stale_after: the scan of their scope has not succeeded since.",
    "unrecoverable": "A production resource that could not be recovered if it were deleted today (no deletion "
                     "protection and no backups, versioning or retained volume).",
}


def run_audit(query: Query, now: datetime | None = None) -> list[Finding]:
    """Every finding over the live estate, streamed out of the store (most severe first)."""
    auditor = auditor_for(query, now or utcnow())
    for batch in audit_batches(query):
        auditor.feed(batch)
    return auditor.findings()


def auditor_for(query: Query, now: datetime) -> Auditor:
    """The auditor of the stored estate as of ``now``: its containers, the overrides active then, the staleness
    threshold and each scope's last scan errors. Fed :func:`audit_batches`, it is :func:`run_audit` (apart so a
    test can read the environment it holds each resource to be)."""
    store = query.store
    overrides = {t: o for t, o in store.overrides().items() if o.active(now)}
    scan_errors: dict[tuple[str, str], list[str]] = {}
    for scan in store.last_scans():
        for scope, message, *_ in scan["errors"]:
            scan_errors.setdefault((scan["source"], scope if scope != scan["source"] else ""), []).append(message)
    return Auditor(query.taxonomy, store.containers(), overrides, stale_before=ts(now - query.config.stale_after),
                   scan_errors=scan_errors, tag_key=query.config.tag_keys[0])


def audit_batches(query: Query) -> Iterator[list[tuple[AuditRow, str, str]]]:
    """The live resources as the audit reads them: ``(row, source, observed)`` in batches, environment tags only."""
    return query.store.iter_for_audit(query.config.tag_keys)


def check_filters(kind: str | None, severity: str | None, provider: str | None) -> None:
    """Raise ValueError naming the accepted values of a bad filter."""
    for name, value, accepted in (("kind", kind, KINDS), ("severity", severity, SEVERITIES),
                                  ("provider", provider, PROVIDERS)):
        if value is not None and value not in accepted:
            raise ValueError(f"{name} must be one of {', '.join(accepted)} (got {value!r})")


def findings(query: Query, *, kind: str | None = None, severity: str | None = None, provider: str | None = None,
             now: datetime | None = None) -> list[dict[str, Any]]:
    """The finding JSON list. ``severity`` keeps findings at or above it; ``kind``/``provider`` match exactly."""
    check_filters(kind, severity, provider)
    sources = {s.name: s.type for s in query.config.sources}
    floor = SEVERITIES.index(severity) if severity else len(SEVERITIES)
    # only a large estate pauses the collector: the pause starts with a full collection of the whole process,
    # which a findings request on a few hundred resources must not pay (nor make every other request wait for)
    with gc_paused_if_large(estate_size(query)):
        found = run_audit(query, now)
        if kind is not None or severity is not None or provider is not None:
            found = [f for f in found if (kind is None or f.kind == kind) and SEVERITIES.index(f.severity) <= floor
                     and (provider is None or provider_of(f, sources) == provider)]
        # each finding let go once rendered: the memory of its resource row holds the next one's JSON
        found.reverse()
        pop = found.pop
        return [finding_json(pop()) for _ in range(len(found))]


def estate_size(query: Query) -> int:
    """About how many resources an audit reads: what the last scan of each source saw (no count query)."""
    return sum(int(scan["resources"]) for scan in query.store.last_scans())


def provider_of(finding: Finding, sources: Mapping[str, str]) -> str:
    if finding.resource is not None:
        return finding.resource.provider
    return sources.get(finding.source, "")


def finding_json(finding: Finding) -> dict[str, Any]:
    """DESIGN.md "Audit finding JSON": target, kind, severity, environment, message, remediation."""
    # unpacked once: half a million findings in a messy estate
    target, kind, severity, environment, message, advice, tags, resource, _, source = finding
    if resource is not None:
        command = tag_command(resource, tags) if tags else recovery_command(resource) if kind == UNRECOVERABLE \
            else None
    else:
        command = rescan_command(source) if source else None
    return {
        "target": target,
        "kind": kind,
        "severity": severity,
        "environment": environment,
        "message": message,
        "remediation": {"tags": {tags[0][0]: tags[0][1]} if len(tags) == 1 else dict(tags), "command": command,
                        "text": advice},
    }


# -- renderings -----------------------------------------------------------------------------------
def summary(rows: Sequence[dict[str, Any]]) -> str:
    counts = Counter(r["severity"] for r in rows)
    return f"{len(rows)} finding(s): " + ", ".join(f"{s} {counts[s]}" for s in SEVERITIES)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Grouped by severity; one aligned line per finding, then what it means and the command that fixes it."""
    if not rows:
        return "no findings: every resource has one agreed, canonical, fresh environment"
    kind_w = max(len(r["kind"]) for r in rows)
    env_w = max(len(r["environment"]) for r in rows)
    lines: list[str] = []
    for severity in SEVERITIES:
        group = [r for r in rows if r["severity"] == severity]
        if not group:
            continue
        lines.append(f"{severity.upper()} ({len(group)})")
        for r in group:
            lines.append(f"  {r['kind']:<{kind_w}}  {r['environment']:<{env_w}}  {r['target']}")
            lines += textwrap.wrap(r["message"], 100, initial_indent=" " * 6, subsequent_indent=" " * 6)
            fix = r["remediation"]
            lines += textwrap.wrap(f"fix: {fix['text']}", 100, initial_indent=" " * 6, subsequent_indent=" " * 11)
            if fix["command"]:
                lines.append(f"      $ {fix['command']}")
        lines.append("")
    lines.append(summary(rows))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(rows: Sequence[dict[str, Any]], generated_at: datetime) -> str:
    """A ticket-ready report: counts, then one table per severity with the fix commands."""
    lines = ["# envlabel audit", "", f"Generated {ts(generated_at)}. {summary(rows)}.", ""]
    if not rows:
        return "\n".join([*lines, "No findings."]) + "\n"
    kinds = Counter(r["kind"] for r in rows)
    lines += ["| Kind | Findings |", "|---|---|"]
    lines += [f"| {k} | {kinds[k]} |" for k in KINDS if kinds[k]]
    for severity in SEVERITIES:
        group = [r for r in rows if r["severity"] == severity]
        if not group:
            continue
        lines += ["", f"## {severity.capitalize()} ({len(group)})", "",
                  "| Kind | Target | Expected | Finding | Fix |", "|---|---|---|---|---|"]
        for r in group:
            fix = r["remediation"]
            command = f"<br>`{_cell(fix['command'])}`" if fix["command"] else ""
            lines.append(f"| {r['kind']} | `{_cell(r['target'])}` | {r['environment']} | {_cell(r['message'])} | "
                         f"{_cell(fix['text'])}{command} |")
    return "\n".join(lines) + "\n"


def _version() -> str:
    try:
        return version("envlabel")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def to_sarif(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A SARIF 2.1.0 log: one rule per finding kind, one result per finding, located logically by target."""
    rules = [{"id": kind, "name": kind.title().replace("-", ""), "shortDescription": {"text": _RULES[kind]},
              "defaultConfiguration": {"level": _SARIF_DEFAULT.get(kind, "warning")}} for kind in KINDS]
    results = []
    for r in rows:
        fix = r["remediation"]
        text = f"{r['message']}. Fix: {fix['text']}" + (f" ({fix['command']})" if fix["command"] else "")
        fingerprint = hashlib.sha256(f"{r['kind']}\0{r['target']}".encode()).hexdigest()
        results.append({
            "ruleId": r["kind"],
            "ruleIndex": KINDS.index(r["kind"]),
            "level": _SARIF_LEVEL[r["severity"]],
            "message": {"text": text},
            "locations": [{"logicalLocations": [{"fullyQualifiedName": r["target"], "kind": "resource"}]}],
            "partialFingerprints": {"envlabelFinding/v1": fingerprint},
            "properties": {"severity": r["severity"], "environment": r["environment"], "remediation": fix},
        })
    driver = {"name": "envlabel", "version": _version(), "rules": rules}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}


def render(rows: Sequence[dict[str, Any]], output: str, now: datetime) -> str:
    if output == "json":
        return json.dumps(list(rows), indent=2)
    if output == "markdown":
        return format_markdown(rows, now)
    if output == "sarif":
        return json.dumps(to_sarif(rows), indent=2)
    return format_table(rows)
