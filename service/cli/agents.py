"""The commands agents and operators run against the authority: check, serve, mcp."""

from __future__ import annotations

import sys

import click

from envlabel.records import CheckRecord
from envlabel.service.cli.kit import config_option, emit_json, get_config, open_configured_store
from envlabel.service.core.query import Query

#: exit codes of ``envlabel check`` per decision (DESIGN.md "Interfaces")
CHECK_EXIT = {"allow": 0, "require_approval": 4, "deny": 5}


@click.command(name="check")
@click.option("--action", "-a", required=True,
              help="The operation: an AWS operation (rds:DeleteDBInstance) or a Kubernetes verb (delete).")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the check JSON.")
@click.option("--contents", is_flag=True,
              help="Decide as the strictest of TARGET and everything stored below it (an account's resources).")
@config_option
def check_command(action: str, target: str, as_json: bool, contents: bool) -> None:
    """May ACTION be done to TARGET? Exit 0 allow, 4 require approval, 5 deny (2 for a malformed target)."""
    from envlabel.service.core.check import check

    body = check(Query(get_config(), open_configured_store()), target, action, contents=contents)
    if as_json:
        emit_json(body)
    else:
        click.echo(format_check(body))
    sys.exit(CHECK_EXIT.get(body["decision"], CHECK_EXIT["deny"]))


def format_check(body: CheckRecord) -> str:
    approvers = f" (approvers: {', '.join(body['approvers'])})" if body["approvers"] else ""
    understood = body.get("understood_as")
    # say what the action was read as when that is not how it was written, or that it was not recognized
    read_as = (" [not recognized]" if understood is None else
               f" [understood as {understood}]" if understood != body["action"] else "")
    lines = [f"{body['decision']}: {body['action']}{read_as} ({body['action_class']}) on {body['target']} as "
             f"{body['environment']}{approvers}"]
    lines += [f"  - {reason}" for reason in body["reasons"]]
    return "\n".join(lines)


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
