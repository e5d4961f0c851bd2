"""The MCP server: envlabel's answers as tools an agent calls before it acts.

The same tools serve over stdio (``envlabel mcp``) and over streamable HTTP at ``/mcp`` inside
the API app. Every tool calls the query layer the HTTP API uses (STYLE 14): the answers, the
fail-closed rules and the reasons are the same whichever interface asked. ``check_action`` asks the
:class:`~envlabel.service.core.authority.Authority` (grants, approvals, mode, the decision log) for its caller:
over HTTP the caller the API's front door established for the request (the token's principal), over stdio
the process's own (ENVLABEL_PRINCIPAL, else anonymous). An answer that carries an approval request adds an
``instruction``: stop, tell the operator the request id, retry the same call once it is approved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from starlette.routing import BaseRoute

from envlabel.errors import EnvlabelError
from envlabel.service.core.authority import Authority, Caller
from envlabel.service.core.errors import outcome_of
from envlabel.service.core.listing import DEFAULT_LIMIT, list_findings, list_resources
from envlabel.service.core.query import Query

INSTRUCTIONS = """\
envlabel knows the environment (production, staging, sandbox) of every cloud and cluster resource,
from its tags and its place in the organization, and decides whether an action on it is allowed.
Before any consequential action on infrastructure (deleting, modifying, creating, scaling, running
a migration), call check_action with the exact target and the operation you are about to perform,
and obey the decision. Never infer the environment from names: a production system can look exactly
like staging. Targets: an AWS ARN or 12-digit account id; k8s://CLUSTER/NAMESPACE/KIND/NAME or
k8s://CLUSTER/KIND/NAME; a GCP resource name (projects/ID, folders/N, organizations/N or
//cloudresourcemanager.googleapis.com/projects/ID)."""

GET_ENVIRONMENT = """\
The environment of one target, with the evidence it was decided from.

Call it when you need to know which world a target lives in (to describe it, to choose how careful
to be). Before acting on a target, call check_action instead: it includes this label.

environment is production, staging, sandbox (or another configured name), or unknown. unknown, or
found: false, means envlabel has no authoritative signal for it or has never seen it: treat it as
production. stale: true means the last complete scan is too old to trust: also treat it as
production. conflict: true means signals disagree; the most restrictive environment won."""

CHECK_ACTION = """\
May this action be done to this target? Call it BEFORE every consequential action (delete, modify,
create, scale, restart, run a migration) on infrastructure, with the exact target and operation.

action is the AWS operation (rds:DeleteDBInstance, TerminateInstances, s3:PutObject) or the
Kubernetes verb (get, list, create, update, patch, delete). Unrecognized actions are treated as
delete, the irreversible class.

decision:
- allow: proceed with exactly this action on exactly this target.
- require_approval: STOP. Do not perform the action. Ask the people in approvers (or your operator)
  to approve it, quoting the reasons. Do not retry with another id of the same target, another
  action name, or a workaround that reaches the same effect.
- deny: do not perform the action, and do not look for a way around it; tell your operator why
  (the reasons).
environment is the environment the decision was made as: production whenever the target's label is
unknown, stale or never seen.

An answer with approval (require_approval) names a request (approval.id) a person can approve: STOP,
tell your operator that id and what you were about to do, and once it is approved retry exactly the
same call (same target, action and parameters): it is then allowed once.

recovery says what the action would cost on THIS target, from its scanned facts (deletion protection,
backups, snapshots, versioning, reclaim policy) and your parameters:
- reversible true: it can be undone; how says how (restore from snapshot ..., the previous object version);
  loses says what would still be lost (data written since the snapshot).
- reversible false: it cannot be undone; why says what makes it so (no backups, SkipFinalSnapshot).
- reversible "unknown": the facts are not known; treat it as irreversible.
An irreversible (false or "unknown") destructive action needs a human: even when the decision is allow, tell
your operator what recovery.why says and get their go-ahead before you perform it (the answer's instruction
says so). destroys_data true means a
modify that destroys data (backups set to 0, versioning suspended, an expiration): it is decided as a delete.
reversible at the top level repeats recovery.reversible is true.

parameters: the call's own parameters (JSON), if you have them: an approval is bound to them, and recovery
reads them (SkipFinalSnapshot, FinalDBSnapshotIdentifier, BackupRetentionPeriod, propagationPolicy).

contents: pass true when the action touches "anything in" the target rather than one named resource
(a write in an account that names no resource): the decision is then the strictest of the target and
everything stored below it."""

LIST_RESOURCES = """\
Labeled resources, optionally only one environment (production, staging, sandbox, unknown) or
provider (aws, gcp, kubernetes), a page at a time in id order. Pass next_cursor back as cursor to
get the next page; it is null on the last page. Use it to survey an estate, not to decide whether
an action is allowed (use check_action for that)."""

LIST_FINDINGS = """\
Audit findings about environment labels: conflict (a resource's tag disagrees with its container),
ambiguous, unlabeled, non-canonical, unrecognized, name-mismatch, stale, and unrecoverable (a production
resource that could not be recovered if deleted today: no deletion protection and no backups or versioning).
Each has a severity and a remediation (the exact tag to set, or the command that turns on backups). Filter by
kind, severity or provider. Use it to report problems to people; a finding never makes an action safer."""

_READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)


#: where the API's front door puts the caller of a request (envlabel.service.http.callers.CALLER; the MCP face
#: does not import the HTTP face)
CALLER_SCOPE_KEY = "envlabel.caller"


def build_mcp(authority: Authority | Query, caller: Caller | None = None) -> MCPServer:
    """An MCP server whose tools answer from ``authority`` (a bare Query: no decision log); ``caller``: who calls
    when no HTTP request says so (stdio: the process's principal; default anonymous)."""
    authority = authority if isinstance(authority, Authority) else Authority(authority)
    query = authority.query
    fallback = caller if caller is not None else Caller(interface="mcp")
    server: MCPServer = MCPServer("envlabel", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(description=GET_ENVIRONMENT, annotations=_READ_ONLY)
    def get_environment(target: str) -> dict[str, Any]:
        return _answer(query.label, target)

    @server.tool(description=CHECK_ACTION, annotations=_READ_ONLY)
    def check_action(target: str, action: str, contents: bool = False, parameters: dict[str, Any] | None = None,
                     ctx: Context | None = None) -> dict[str, Any]:
        if not action.strip():
            raise ToolError("action is empty; pass the operation you are about to perform, such as "
                            "rds:DeleteDBInstance or delete")
        who = caller_of_request(ctx, fallback)
        return with_instruction(_answer(lambda: authority.check(who, target, action, contents=contents,
                                                                parameters=parameters)))

    # the Python names differ from the tool names so they do not shadow the query functions
    @server.tool(name="list_resources", description=LIST_RESOURCES, annotations=_READ_ONLY)
    def list_resources_tool(environment: str | None = None, provider: str | None = None,
                            limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
        return _answer(list_resources, query, environment, provider, limit, cursor)

    @server.tool(name="list_findings", description=LIST_FINDINGS, annotations=_READ_ONLY)
    def list_findings_tool(kind: str | None = None, severity: str | None = None,
                           provider: str | None = None) -> dict[str, Any]:
        return _answer(list_findings, query, kind, severity, provider)

    return server


def caller_of_request(ctx: Context | None, fallback: Caller) -> Caller:
    """The caller the API's front door put in the HTTP request's scope (interface mcp), else ``fallback``."""
    try:
        request = ctx.request_context.request if ctx is not None else None
    except ValueError:  # no request context: called outside a request
        request = None
    scope = getattr(request, "scope", None)
    found = scope.get(CALLER_SCOPE_KEY) if isinstance(scope, dict) else None
    if not isinstance(found, Caller):
        return fallback
    return replace(found, interface="mcp")


def with_instruction(answer: dict[str, Any]) -> dict[str, Any]:
    """The check answer, with a plain ``instruction`` when it carries an approval request still to be decided."""
    approval = answer.get("approval")
    if answer.get("decision") == "require_approval" and isinstance(approval, dict) and answer.get("mode") != "audit":
        where = f" (approval page: {approval['url']})" if approval.get("url") else ""
        answer["instruction"] = (
            f"STOP: do not perform {answer.get('action')} on {answer.get('target')}. Tell your operator that "
            f"approval request {approval['id']} is waiting for a person to approve it{where}; once it is approved, "
            "retry exactly the same call (same target, action and parameters): it is then allowed once. Do not "
            "retry with another id, action or workaround.")
    elif answer.get("decision") == "allow" and _irreversible(answer) and "approval" not in answer:
        # (an allow that spent an approval was decided by a person who saw the same recovery)
        why = "; ".join(answer["recovery"].get("why") or []) or "its recovery is not known"
        answer["instruction"] = (
            f"Allowed, but {answer.get('action')} on {answer.get('target')} cannot be undone as far as envlabel "
            f"knows ({why}). Tell your operator exactly that and get a person's go-ahead before you perform it.")
    return answer


def _irreversible(answer: Mapping[str, Any]) -> bool:
    """A destructive action (a delete, or a modify that destroys data) whose recovery is not known to be true."""
    recovery = answer.get("recovery")
    if not isinstance(recovery, Mapping) or recovery.get("reversible") is True:
        return False
    return answer.get("action_class") == "delete" or bool(recovery.get("destroys_data"))


def _answer(call: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Run a use case; an error the agent can act on (the one table says which) is a tool error whose message
    says what to do; any other fails the call."""
    try:
        result: dict[str, Any] = call(*args)
    except EnvlabelError as exc:
        if not outcome_of(exc).tool_error:
            raise
        raise ToolError(str(exc)) from exc
    return result


def streamable_http(server: MCPServer, host: str) -> tuple[Sequence[BaseRoute], Callable[[], Any]]:
    """The routes that serve ``server`` at ``/mcp`` over streamable HTTP, and what must run while they serve
    (its session manager), for the runtime to mount beside the HTTP API."""
    # Host and Origin are checked by the HTTP API's front door for every path, /mcp included, by one rule (loopback
    # only when no token is configured): the SDK's own check would refuse a different set, in plain text
    unchecked = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host,
                                     transport_security=unchecked)
    return app.routes, server.session_manager.run
