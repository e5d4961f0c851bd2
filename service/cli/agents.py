"""The commands agents and operators run against the authority: check, serve, mcp."""

from __future__ import annotations

import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

import click

from envlabel.config import Config
from envlabel.records import CheckRecord
from envlabel.service.cli.kit import EXIT_USAGE, config_option, emit_json, fail, get_config, open_configured_store
from envlabel.service.core.query import Query

if TYPE_CHECKING:
    from envlabel.service.core.authority import Caller

#: exit codes of ``envlabel check`` per decision (DESIGN.md "Interfaces")
CHECK_EXIT = {"allow": 0, "require_approval": 4, "deny": 5}


@click.command(name="check")
@click.option("--action", "-a", required=True,
              help="The operation: an AWS operation (rds:DeleteDBInstance) or a Kubernetes verb (delete).")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the check JSON.")
@click.option("--contents", is_flag=True,
              help="Decide as the strictest of TARGET and everything stored below it (an account's resources).")
@click.option("--principal", default=None,
              help="Who acts (decides by its grant; approvals are bound to it). Default: $ENVLABEL_PRINCIPAL, "
                   "else user:$USER.")
@click.option("--parameters", "parameters_json", default=None, metavar="JSON",
              help='The call\'s parameters as a JSON object ({"SkipFinalSnapshot": true}): an approval allows '
                   "only the call with the same parameters.")
@config_option
def check_command(action: str, target: str, *, as_json: bool, contents: bool, principal: str | None,
                  parameters_json: str | None) -> None:
    """May ACTION be done to TARGET? Exit 0 allow, 4 require approval, 5 deny (2 for a malformed target).

    In audit mode (config mode: audit, or ENVLABEL_MODE=audit) the exit code is 0 whatever was decided, and
    the answer says what enforcement would have done."""
    from envlabel.service.core.authority import Authority
    from envlabel.service.core.decision_log import DirectDecisionLog

    config, store = get_config(), open_configured_store()
    authority = Authority(Query(config, store), log=DirectDecisionLog(store) if config.decisions.enabled else None)
    parameters = parameters_of(parameters_json)
    body = authority.check(cli_caller(config, principal), target, action, contents=contents, parameters=parameters)
    if as_json:
        emit_json(body)
    else:
        click.echo(format_check(body))
    if body.get("mode") == "audit":
        sys.exit(0)
    sys.exit(CHECK_EXIT.get(body["decision"], CHECK_EXIT["deny"]))


def cli_caller(config: Config, principal: str | None) -> Caller:
    """Who runs the CLI: ``--principal``, else ENVLABEL_PRINCIPAL, else ``user:`` and the login name, with the
    groups config ``principals`` gives that name, and the mode ENVLABEL_MODE asks for. Nothing authenticates a
    CLI user: whoever can read the store can act as anyone, so the name is a record, not a proof."""
    from envlabel.client import mode_from_env, principal_from_env
    from envlabel.service.core.authority import Caller

    name = (principal or "").strip() or principal_from_env() or f"user:{getpass.getuser()}"
    if not name.isprintable() or any(c.isspace() for c in name):
        fail(f"--principal {name!r} must be a name without spaces, such as ci-deployer or user:alice", EXIT_USAGE)
    known = config.principals.get(name)
    return Caller(principal=name, groups=tuple(known.groups) if known else (), interface="cli",
                  mode=mode_from_env())


def parameters_of(text: str | None) -> dict[str, Any] | None:
    """``--parameters`` as a JSON object, or a usage error that shows one."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        fail(f"--parameters is not JSON ({exc}); pass an object such as '{{\"SkipFinalSnapshot\": true}}'",
             EXIT_USAGE)
    if not isinstance(value, dict):
        fail("--parameters must be a JSON object, such as '{\"SkipFinalSnapshot\": true}'", EXIT_USAGE)
    return value


def format_check(body: CheckRecord) -> str:
    approvers = f" (approvers: {', '.join(body['approvers'])})" if body["approvers"] else ""
    understood = body.get("understood_as")
    # say what the action was read as when that is not how it was written, or that it was not recognized
    read_as = (" [not recognized]" if understood is None else
               f" [understood as {understood}]" if understood != body["action"] else "")
    lines = [f"{body['decision']}: {body['action']}{read_as} ({body['action_class']}) on {body['target']} as "
             f"{body['environment']}{approvers}"]
    if "principal" in body:
        claimed = f" (claimed: {body['claimed_principal']})" if "claimed_principal" in body else ""
        lines.append(f"  principal: {body['principal']}{claimed}")
    if body.get("rule"):
        lines.append(f"  rule: {body['rule']}")
    lines += recovery_lines(body)
    lines += [f"  - {reason}" for reason in body["reasons"]]
    lines += approval_lines(body)
    lines += [f"  lookalike: {twin['note']}" for twin in body.get("lookalikes") or []]
    if body.get("mode") == "audit" and body["decision"] != "allow":
        lines.append(f"audit mode: would have been {body['decision']} (nothing is blocked in audit mode)")
    return "\n".join(lines)


#: how each verdict of ``recovery.reversible`` reads on the terminal
_VERDICTS = {True: "recoverable", False: "IRREVERSIBLE", "unknown": "unknown (treated as irreversible)"}


def recovery_lines(body: CheckRecord) -> list[str]:
    """What the action would cost on this target: whether it can be undone, why, how, and what is lost.

    >>> recovery_lines({"recovery": {"reversible": False, "why": ["deletion protection is off", "no snapshot"],
    ...                              "how": None, "loses": "every row", "destroys_data": False}})
    ['  recovery: IRREVERSIBLE: deletion protection is off; no snapshot', '    loses: every row']
    """
    recovery = body.get("recovery")
    if recovery is None:
        return []
    verdict = _VERDICTS.get(recovery["reversible"], str(recovery["reversible"]))
    why = f": {'; '.join(recovery['why'])}" if recovery["why"] else ""
    lines = [f"  recovery: {verdict}{why}"]
    if recovery.get("how"):
        lines.append(f"    how: {recovery['how']}")
    if recovery.get("loses"):
        lines.append(f"    loses: {recovery['loses']}")
    if recovery.get("destroys_data"):
        lines.append("    this change destroys data: it is decided as a delete")
    return lines


def approval_lines(body: CheckRecord) -> list[str]:
    """The approval request of a require_approval answer (what to do), or the approval an allow spent."""
    approval = body.get("approval")
    if approval is None:
        return []
    if approval["status"] == "pending":
        who = " or ".join(body["approvers"]) or "an approver"
        page = f" (or open {approval['url']})" if approval.get("url") else ""
        return [f"approval {approval['id']} pending: ask {who} to run `envlabel approvals approve "
                f"{approval['id']} --by NAME`{page}, then retry the same command (expires {approval['expires_at']})"]
    return [f"  approval: {approval['id']} ({approval['status']})"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything beyond loopback needs api.tokens in the config.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--shutdown-timeout", default=25.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to let running scans finish after SIGTERM; keep it below the pod's "
                   "terminationGracePeriodSeconds. Scans still running then are abandoned (nothing committed).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve HTTPS with this PEM certificate (chain), as kube-apiserver needs for the admission "
                   "webhook; with --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The PEM private key of --tls-cert.")
@config_option
def serve(host: str, port: int, shutdown_timeout: float, tls_cert: str | None, tls_key: str | None) -> None:
    """The daemon: the HTTP API (and MCP at /mcp), scheduled scans, Kubernetes watches and webhooks."""
    from envlabel.service.daemon.ports import bind_listener
    from envlabel.service.daemon.server import Tls

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key (HTTPS), or neither (plain HTTP)")
    tls = Tls(tls_cert, tls_key) if tls_cert and tls_key else None
    if tls is not None:
        tls.check()  # a bad pair is one line and exit 1 before anything listens or scans
    config = get_config()
    # the port first, before the store is opened or anything scans: a port in use is one line and exit 1, and
    # the API then serves this very socket
    listener = bind_listener(host, port)
    from envlabel.service.daemon.scheduler import run_daemon

    run_daemon(config, open_configured_store(), host, port, shutdown_timeout, listener=listener, tls=tls)


@click.command()
@config_option
def mcp() -> None:
    """The MCP server over stdio (tools: get_environment, check_action, list_resources, list_findings)."""
    from envlabel.service.daemon.server import serve_stdio

    serve_stdio(get_config(), open_configured_store())


ALL = [check_command, serve, mcp]
