"""``envlabel check-plan``: every change of a Terraform / OpenTofu plan decided by the check (a CI gate).

The plan is read by :mod:`envlabel.commands.terraform` (``terraform show -json PLAN``); each change's operation
is decided like ``envlabel check``: by the server at ``ENVLABEL_URL`` when it is set, else by the configured
store. A change whose target cannot be named is decided as production by the configured policy (an unknown
target is decided as production). Output as a table, JSON, Markdown or SARIF 2.1.0; exit codes as ``check``
(0 allow, 4 require approval, 5 deny, by the strictest), or with ``--fail-on`` as ``audit --fail-on`` (1 when a
change is decided at or above it, else 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import click

from envlabel.actions import classify
from envlabel.client import DECISIONS
from envlabel.commands import CommandContext, Operation
from envlabel.commands.terraform import PlanError, PlannedChange, PlanReading, load_plan, read_plan
from envlabel.config import Config
from envlabel.labelers.decision import policy_decision
from envlabel.labelers.recovery import recovery
from envlabel.records import ActionClass, CheckRecord
from envlabel.service.cli.agents import CHECK_EXIT
from envlabel.service.cli.kit import EXIT_USAGE, config_option, emit_json, fail, get_config, open_configured_store
from envlabel.service.core.audit import SARIF_SCHEMA
from envlabel.service.core.query import not_found

FORMATS = ("table", "json", "markdown", "sarif")
#: the decisions --fail-on takes: at or above it, the gate fails
FAIL_ON = ("require_approval", "deny")
_SARIF_LEVEL = {"require_approval": "warning", "deny": "error"}
_RULES = {
    "require_approval": "The plan changes a resource whose environment requires approval for that change.",
    "deny": "The plan changes a resource whose environment's policy denies that change.",
}
_PROVIDERS = {"aws": "aws", "google": "gcp", "google-beta": "gcp", "kubernetes": "kubernetes",
              "kubectl": "kubernetes", "helm": "kubernetes"}
Decide = Callable[[Operation], CheckRecord]


@click.command(name="check-plan")
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "output", type=click.Choice(FORMATS), default=None,
              help="table (default), json, markdown or sarif (for code scanning).")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--fail-on", "fail_on", type=click.Choice(FAIL_ON), default=None,
              help="Exit 1 when a change is decided at or above this (a CI gate), else 0.")
@click.option("--cluster", default=None, metavar="NAME",
              help="The envlabel cluster of Kubernetes and Helm resources whose provider configuration names no "
                   "context or API server of a configured kubernetes source.")
@config_option
def check_plan(plan_file: str, output: str | None, as_json: bool, fail_on: str | None, cluster: str | None) -> None:
    """May this Terraform / OpenTofu plan be applied? PLAN.json is `terraform show -json PLAN` (- for stdin).

    Every delete, replacement, update and create is decided like `envlabel check` (by ENVLABEL_URL when set,
    else the configured store). Exit 0 allow, 4 require approval, 5 deny; with --fail-on, 1 or 0."""
    if as_json and output not in (None, "json"):
        fail(f"--json and --format {output} disagree; give one of them", EXIT_USAGE)
    output = "json" if as_json else output or "table"
    reading = read_plan(read_plan_file(plan_file), cluster=cluster, context=local_context(get_config()))
    report = decide_plan(reading, deciders(), get_config())
    if output == "json":
        emit_json(report)
    else:
        click.echo(render(report, output, plan_file))
    decision = str(report["decision"])
    if fail_on is not None:
        failed = DECISIONS.index(decision) >= DECISIONS.index(fail_on)
        if failed and output != "table":
            click.echo(f"envlabel: check-plan failed: changes decided {fail_on} or stricter ({summary(report)})",
                       err=True)
        sys.exit(1 if failed else 0)
    sys.exit(CHECK_EXIT.get(decision, CHECK_EXIT["deny"]))


def read_plan_file(plan_file: str) -> dict[str, Any]:
    """The plan JSON of ``plan_file`` (``-``: stdin), or a usage error that says how to produce one."""
    source = "stdin" if plan_file == "-" else plan_file
    try:
        raw = sys.stdin.buffer.read() if plan_file == "-" else Path(plan_file).read_bytes()
    except OSError as exc:
        fail(f"cannot read the plan {source}: {exc.strerror or exc}; pass the file `terraform show -json PLAN` "
             "wrote", EXIT_USAGE)
    try:
        return load_plan(raw, source)
    except PlanError as exc:
        fail(str(exc), EXIT_USAGE)


def local_context(config: Config) -> CommandContext:
    """This process's environment, and the config's kubernetes sources naming contexts and API servers."""
    from envlabel.hooks import cluster_maps

    by_context, by_server = cluster_maps(config.sources)
    return CommandContext(environ=dict(os.environ), cwd=os.getcwd(), clusters_by_context=by_context,
                          clusters_by_server=by_server)


def deciders() -> Decide:
    """The check of one operation: by the server at ENVLABEL_URL when it is set, else by the configured store."""
    if os.environ.get("ENVLABEL_URL"):
        from envlabel.client import Client

        client = Client()
        click.get_current_context().call_on_close(client.close)
        return lambda op: cast(CheckRecord, client.check(op.target, op.action, op.contents))
    from envlabel.service.core.check import check
    from envlabel.service.core.query import Query

    query = Query(get_config(), open_configured_store())
    return lambda op: check(query, op.target, op.action, contents=op.contents)


def decide_plan(reading: PlanReading, decide: Decide, config: Config) -> dict[str, Any]:
    """``{"decision", "changes": [{"address", "actions", "target", "note", "check"}], "skipped",
    "terraform_version"}``: every change decided, the strictest decision overall (allow with no change)."""
    changes: list[dict[str, Any]] = []
    ranks = [0]
    for change in reading.changes:
        check = decide(change.operation) if change.operation else decide_unnamed(config, change)
        changes.append({"address": change.address, "actions": list(change.actions),
                        "target": change.operation.target if change.operation else None,
                        "note": change.note, "check": check})
        # a decision this envlabel does not know counts as deny: fail closed
        ranks.append(DECISIONS.index(check["decision"]) if check["decision"] in DECISIONS else len(DECISIONS) - 1)
    decision = max(ranks)
    return {"decision": DECISIONS[decision], "changes": changes, "skipped": reading.skipped,
            "terraform_version": reading.terraform_version}


def decide_unnamed(config: Config, change: PlannedChange) -> CheckRecord:
    """The check JSON of a change no target could be named for: decided as the most restrictive environment
    by the policy, the reason saying why there is no target and what would name one."""
    environment = config.environments[0]
    classification = classify(change.action)
    # nothing is known of a target no one named: its recovery has no facts (a delete is decided as irreversible)
    cost = recovery(classification.action_class, classification.understood_as, None, None, {})
    action_class: ActionClass = "delete" if cost["destroys_data"] else classification.action_class
    decision, policy_reason, rule = policy_decision(config, environment, action_class, cost)
    approvers = list(config.approvers.get(environment, [])) if decision == "require_approval" else []
    reasons = [classification.reason, f"{change.address}: {change.note} (fail closed)", policy_reason]
    if decision == "require_approval":
        reasons.append(f"ask {', '.join(approvers)} to approve" if approvers else
                       f"no approvers are configured for {environment} (config approvers.{environment}); "
                       "ask the owner of the target")
    return {"target": change.address, "action": change.action, "action_class": action_class,
            "environment": environment, "decision": decision, "reversible": cost["reversible"] is True,
            "reasons": reasons, "approvers": approvers,
            "label": not_found(change.address, _PROVIDERS.get(change.provider, change.provider)),
            "understood_as": classification.understood_as, "rule": rule, "recovery": cost}


# -- renderings ---------------------------------------------------------------------------------------------
def summary(report: dict[str, Any]) -> str:
    counts = Counter(c["check"]["decision"] for c in report["changes"])
    skipped = f"; {report['skipped']} unchanged or state-only skipped" if report["skipped"] else ""
    return (f"{len(report['changes'])} change(s): " + ", ".join(f"{d} {counts[d]}" for d in DECISIONS)
            + f"{skipped}; decision {report['decision']}")


def render(report: dict[str, Any], output: str, plan_file: str) -> str:
    if output == "markdown":
        return format_markdown(report, plan_file)
    if output == "sarif":
        return json.dumps(to_sarif(report, plan_file), indent=2)
    return format_table(report)


def format_table(report: dict[str, Any]) -> str:
    """One aligned row per change (address, actions, target, environment, decision), its reasons below."""
    changes = report["changes"]
    if not changes:
        return f"allow: the plan changes no infrastructure ({summary(report)})"
    rows = [("ADDRESS", "ACTIONS", "TARGET", "ENVIRONMENT", "DECISION")]
    rows += [(c["address"], ",".join(c["actions"]), c["target"] or "(none: decided as production)",
              c["check"]["environment"], c["check"]["decision"]) for c in changes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(rows[0][:4], widths, strict=True)) + "  " + rows[0][4]]
    for row, change in zip(rows[1:], changes, strict=True):
        lines.append("  ".join(f"{cell:<{w}}" for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
        lines += [f"    - {reason}" for reason in reasons_of(change)]
    lines.append(summary(report))
    return "\n".join(lines)


def reasons_of(change: dict[str, Any]) -> list[str]:
    """How the target was read, then the check's reasons."""
    note = [f"target: {change['note']}"] if change["target"] and change["note"] else []
    return note + [str(r) for r in change["check"]["reasons"]]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(report: dict[str, Any], plan_file: str) -> str:
    """A pull-request comment: the decision, then one table row per change with its reasons."""
    lines = ["# envlabel check-plan", "", f"Plan `{_cell(plan_file)}`: {summary(report)}.", ""]
    if not report["changes"]:
        return "\n".join([*lines, "The plan changes no infrastructure."]) + "\n"
    lines += ["| Address | Actions | Target | Environment | Decision | Reason |", "|---|---|---|---|---|---|"]
    for c in report["changes"]:
        target = f"`{_cell(c['target'])}`" if c["target"] else "(none: decided as production)"
        reasons = "<br>".join(_cell(r) for r in reasons_of(c))
        lines.append(f"| `{_cell(c['address'])}` | {', '.join(c['actions'])} | {target} | "
                     f"{c['check']['environment']} | **{c['check']['decision']}** | {reasons} |")
    return "\n".join(lines) + "\n"


def to_sarif(report: dict[str, Any], plan_file: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log: one rule per blocking decision, one result per change that is not allowed, located
    in the plan file and logically by its address and target."""
    rules = [{"id": decision, "name": decision.title().replace("_", ""), "shortDescription": {"text": text},
              "defaultConfiguration": {"level": _SARIF_LEVEL[decision]}} for decision, text in _RULES.items()]
    results = []
    for c in report["changes"]:
        check = c["check"]
        if check["decision"] == "allow":
            continue
        decision = check["decision"] if check["decision"] in _RULES else "deny"  # anything else: fail closed
        target = c["target"] or "no target (decided as production)"
        text = (f"{c['address']}: {', '.join(c['actions'])} is {check['decision']} on {target} "
                f"({check['environment']}): " + "; ".join(reasons_of(c)))
        logical = [{"fullyQualifiedName": c["address"], "kind": "resource"}]
        if c["target"]:
            logical.append({"fullyQualifiedName": c["target"], "kind": "resource"})
        location: dict[str, Any] = {"logicalLocations": logical}
        if plan_file != "-":
            location["physicalLocation"] = {"artifactLocation": {"uri": Path(plan_file).as_posix()}}
        fingerprint = hashlib.sha256(f"{c['address']}\0{c['target']}\0{check['action']}".encode()).hexdigest()
        results.append({
            "ruleId": decision, "ruleIndex": list(_RULES).index(decision), "level": _SARIF_LEVEL[decision],
            "message": {"text": text}, "locations": [location],
            "partialFingerprints": {"envlabelPlanChange/v1": fingerprint},
            "properties": {"actions": c["actions"], "target": c["target"], "environment": check["environment"],
                           "action": check["action"], "approvers": check["approvers"]},
        })
    driver = {"name": "envlabel", "version": _version(), "rules": rules}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}


def _version() -> str:
    try:
        return version("envlabel")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


ALL = [check_plan]
