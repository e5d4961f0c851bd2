"""The approval page (docs/approvals.md, "The page"): what an approver sees before saying yes, server-rendered.

An approval is only as good as what the approver reads, so the page puts first what an agent gets wrong: the
ENVIRONMENT in large type and its colour, the target, who asks for which action, whether it can be undone, the
evidence chain of the label, and the lookalikes ("orders-db also exists in staging: arn:...") before the Approve /
Deny buttons, which need a reason. No JavaScript, nothing loaded from elsewhere; every value is escaped.

Who may decide:

- with ``api.tokens``, an approver signs in at ``/approvals/login`` with an **admin** token; the page keeps it in
  an HttpOnly, SameSite=Strict cookie scoped to ``/approvals`` (Secure over https) and checks it on every request,
  so any replica of the server accepts it. The approver's name is the token's principal. A reader token is refused.
- a **one-time link** ``/approvals/ID?key=K`` from the notification lets its holder see and decide that one
  request, once, giving a name (recorded as ``link:NAME``);
- without tokens (a loopback server) the pages are open, as the API is; the approver types a name.

Every form carries a CSRF token derived from the session's secret (the token, the link key, or a random cookie),
and a POST whose ``Origin`` (or ``Sec-Fetch-Site``) is another site is refused. The requester can never decide its
own request: :mod:`envlabel.service.core.approvals` refuses it, and the page shows why.

The Gate lets ``/approvals`` and everything below it through without a bearer token; these routes authenticate
themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from envlabel.errors import EnvlabelError
from envlabel.records import ApprovalRecord
from envlabel.service.core import approvals
from envlabel.service.core.authority import Authority
from envlabel.service.core.clock import utcnow
from envlabel.service.core.errors import outcome_of
from envlabel.service.http.tokens import ADMIN, TokenRefused, Tokens

PREFIX = "/approvals"
#: the cookie holding a signed-in approver's admin token
SESSION_COOKIE = "envlabel_approver"
#: the cookie whose random value keys the CSRF token when nobody signs in (a loopback server)
CSRF_COOKIE = "envlabel_csrf"
SESSION_SECONDS = 8 * 3600
MAX_FORM_BYTES = 16 * 1024
#: the colour of an environment's banner; any other environment (and unknown) is shown as production is
COLOURS = {"production": "#b00020", "staging": "#c75b00", "sandbox": "#1b7f3b", "development": "#1b7f3b"}


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a page, as the page established it."""

    #: "token" (signed in), "link" (a one-time link's key), "open" (a loopback server without tokens)
    kind: str
    #: the approver's name when the page knows it (the token's principal); else the form gives it
    name: str | None
    #: what the CSRF token is derived from: the admin token, the link key, or the CSRF cookie
    secret: str
    key: str | None = None
    #: the CSRF cookie is new: the answer sets it
    new_cookie: bool = False

    def csrf(self, approval_id: str) -> str:
        return hmac.new(self.secret.encode(), f"envlabel-page-csrf:{approval_id}".encode(), hashlib.sha256).hexdigest()


class Refused(Exception):
    """The page cannot be shown to this request: ``response`` says why (a page, or a redirect to sign in)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def page_routes(authority: Authority) -> list[BaseRoute]:
    """The approval page's routes, to mount beside the API (the Gate passes ``/approvals*`` without a token)."""
    page = ApprovalPage(authority)
    return [
        Route(PREFIX, page.list_page, methods=["GET"]),
        Route(PREFIX + "/login", page.login, methods=["GET", "POST"]),
        Route(PREFIX + "/logout", page.logout, methods=["POST"]),
        Route(PREFIX + "/{approval_id}", page.detail, methods=["GET", "POST"]),
    ]


class ApprovalPage:
    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        tokens = authority.config.api.tokens
        self.tokens = Tokens(tuple(tokens), required=bool(tokens))

    # -- routes -------------------------------------------------------------------------------------
    async def list_page(self, request: Request) -> Response:
        try:
            viewer = self.viewer(request, None, None)
        except Refused as refused:
            return refused.response
        pending = await anyio.to_thread.run_sync(self._pending)
        return self.html(request, viewer, "Pending approvals", render_list(pending))

    async def detail(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        form = await read_form(request) if request.method == "POST" else {}
        key = form.get("key") or request.query_params.get("key")
        try:
            if request.method == "POST":
                refuse_foreign_origin(request)
            viewer = await anyio.to_thread.run_sync(self.viewer, request, approval_id, key)
            record = await anyio.to_thread.run_sync(approvals.get_approval, self.authority.query, approval_id)
        except Refused as refused:
            return refused.response
        except EnvlabelError as exc:
            return self.problem(request, exc)
        if request.method == "GET":
            done = request.query_params.get("done")
            note = f"Done: the request is now {record['status']}." if done else ""
            return self.html(request, viewer, f"Approval {approval_id}", render_detail(record, viewer, note))
        return await self.decide(request, viewer, record, form)

    async def decide(self, request: Request, viewer: Viewer, record: ApprovalRecord,
                     form: Mapping[str, str]) -> Response:
        """Approve or deny from the form; the core refuses the requester itself and anything no longer pending."""
        approval_id = record["id"]
        decision, reason = form.get("decision", ""), form.get("reason", "").strip()
        problem = None
        if not hmac.compare_digest(form.get("csrf", ""), viewer.csrf(approval_id)):
            problem = "the form is stale or was not sent from this page (CSRF token mismatch): reload the page " \
                      "and decide again"
        elif decision not in ("approve", "deny"):
            problem = "choose Approve or Deny"
        elif not reason:
            problem = "a reason is required: say why you approve or deny, it is recorded with your name"
        by = viewer.name if viewer.kind == "token" else form.get("name", "").strip()
        if problem is None and not by:
            problem = "your name is required: it is recorded as the approver"
        if problem is None and viewer.kind == "link":
            by = f"link:{by}"
        if problem is not None:
            return self.html(request, viewer, f"Approval {approval_id}",
                             render_detail(record, viewer, "", problem=problem), status=400)
        assert by is not None
        decide = approvals.approve if decision == "approve" else approvals.deny
        try:
            decided = await anyio.to_thread.run_sync(
                lambda: decide(self.authority, approval_id, by=by, reason=reason))
        except EnvlabelError as exc:
            status = outcome_of(exc).status
            return self.html(request, viewer, f"Approval {approval_id}",
                             render_detail(record, viewer, "", problem=str(exc)), status=status)
        if viewer.kind == "link":  # the link is spent: show the result now, it cannot be shown again
            return self.html(request, viewer, f"Approval {approval_id}",
                             render_detail(decided, viewer, f"Done: {decision}d by {by}."))
        return RedirectResponse(f"{PREFIX}/{quote(approval_id)}?done={decision}", status_code=303)

    async def login(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if not self.tokens.required:
            return RedirectResponse(target, status_code=303)
        if request.method == "GET":
            return self.html(request, None, "Sign in", render_login(target))
        try:
            refuse_foreign_origin(request)
        except Refused as refused:
            return refused.response
        form = await read_form(request)
        token = form.get("token", "").strip()
        try:
            found = self.tokens.match(b"Bearer " + token.encode())
        except TokenRefused as exc:
            return self.html(request, None, "Sign in", render_login(target, problem=str(exc)), status=401)
        if found.role != ADMIN:
            return self.html(request, None, "Sign in", render_login(target, problem=(
                f"token {found.name!r} has role {found.role}: approving needs an admin token (api.tokens with "
                "role: admin)")), status=403)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        try:
            refuse_foreign_origin(request)
        except Refused as refused:
            return refused.response
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # -- who is asking ------------------------------------------------------------------------------
    def viewer(self, request: Request, approval_id: str | None, key: str | None) -> Viewer:
        """The viewer of this request, or :class:`Refused` (sign in, a reader token, a bad link)."""
        if key and approval_id is not None:
            if not approvals.check_link(self.authority.query, approval_id, key):
                raise Refused(self.page(request, "Link not valid", "<p class=problem>This approval link is not "
                                        "valid: it was used already, the request is no longer pending, or the link "
                                        "is mistyped. Ask for a new request, or sign in with an admin token.</p>",
                                        status=403))
            return Viewer("link", None, key, key)
        if not self.tokens.required:
            secret = request.cookies.get(CSRF_COOKIE)
            return Viewer("open", None, secret or secrets.token_urlsafe(32), new_cookie=not secret)
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise Refused(RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303))
        try:
            found = self.tokens.match(b"Bearer " + token.encode())
        except TokenRefused:
            raise Refused(RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}",
                                           status_code=303)) from None
        if found.role != ADMIN:
            raise Refused(self.page(request, "Admin token needed", f"<p class=problem>token {escape(found.name)} "
                                    "has role reader: approving needs an admin token. <a href='/approvals/login'>"
                                    "Sign in</a> with one.</p>", status=403))
        return Viewer("token", found.principal_name, token)

    def _pending(self) -> list[ApprovalRecord]:
        return approvals.list_approvals(self.authority.query, status="pending")["approvals"]

    # -- answers ------------------------------------------------------------------------------------
    def html(self, request: Request, viewer: Viewer | None, title: str, body: str, status: int = 200) -> Response:
        response = self.page(request, title, body, status=status, signed_in=viewer is not None and
                             viewer.kind == "token")
        if viewer is not None and viewer.new_cookie:
            response.set_cookie(CSRF_COOKIE, viewer.secret, path=PREFIX, httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
        return response

    def page(self, request: Request, title: str, body: str, *, status: int = 200,
             signed_in: bool = False) -> Response:
        return HTMLResponse(layout(title, body, signed_in), status_code=status, headers=SECURITY_HEADERS)

    def problem(self, request: Request, exc: EnvlabelError) -> Response:
        return self.page(request, "Not found" if outcome_of(exc).status == 404 else "Refused",
                         f"<p class=problem>{escape(str(exc))}</p><p><a href='{PREFIX}'>Pending approvals</a></p>",
                         status=outcome_of(exc).status)


#: no scripts, no frames, nothing from elsewhere: the page is HTML and inline CSS
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY", "referrer-policy": "same-origin", "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


def refuse_foreign_origin(request: Request) -> None:
    """A POST sent by a page of another site is refused (the form's CSRF token is the second check)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    site = request.headers.get("sec-fetch-site")
    if (origin is not None and origin != own) or site not in (None, "same-origin", "none"):
        raise Refused(HTMLResponse(layout("Refused", f"<p class=problem>This form was sent from another site "
                                          f"({escape(origin or site or '')}): approvals are decided only on this "
                                          "server's own page.</p>", False), status_code=403, headers=SECURITY_HEADERS))


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each); bounded, so a huge body is refused as empty."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {name: values[0] for name, values in fields.items()}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a page under /approvals only, never another site."""
    return target if target and target.startswith(PREFIX) and "//" not in target and "\\" not in target else PREFIX


# -- rendering -------------------------------------------------------------------------------------
STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#111}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ccc}
.env{font-size:3rem;font-weight:800;letter-spacing:.05em;color:#fff;padding:.3rem 1rem;border-radius:.4rem;
display:inline-block}.env.small{font-size:1rem;padding:.1rem .5rem}
.lookalikes{border:3px solid #c75b00;background:#fff4e5;padding:.6rem 1rem;border-radius:.4rem}
.lookalikes h2{margin:.2rem 0;color:#8a3c00}.problem{border:2px solid #b00020;background:#fdecee;padding:.6rem 1rem}
.note{border:2px solid #1b7f3b;background:#eaf6ee;padding:.6rem 1rem}code{word-break:break-all}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;
vertical-align:top}.irreversible{color:#b00020;font-weight:700}textarea,input[type=text]{width:100%;font:inherit}
button{font:inherit;font-weight:700;padding:.5rem 1.5rem;margin-right:1rem;border-radius:.3rem;border:0;color:#fff}
.approve{background:#1b7f3b}.deny{background:#b00020}
"""


def layout(title: str, body: str, signed_in: bool) -> str:
    logout = (f"<form method=post action='{PREFIX}/logout'><button class=deny>Sign out</button></form>"
              if signed_in else "")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · envlabel</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>"
            f"<header><p><a href='{PREFIX}'>envlabel approvals</a></p>{logout}</header>"
            f"<main><h1>{escape(title)}</h1>{body}</main></body></html>")


def environment_badge(environment: str, *, small: bool = False) -> str:
    colour = COLOURS.get(environment, COLOURS["production"])
    size = " small" if small else ""
    return f"<span class='env{size}' data-environment='{escape(environment)}' style='background:{colour}'>" \
           f"{escape(environment.upper())}</span>"


def age(stamp: str | None, now: datetime | None = None) -> str:
    """How long ago (or, for a future time, in how long) ``stamp`` is, in words a person reads at a glance."""
    if not stamp:
        return ""
    try:
        seconds = int(((now or utcnow()) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    except ValueError:
        return escape(stamp)
    ahead, seconds = seconds < 0, abs(seconds)
    words = f"{seconds}s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
    return f"in {words}" if ahead else f"{words} ago"


def render_list(pending: list[ApprovalRecord]) -> str:
    if not pending:
        return "<p>No request is waiting for an approval.</p>"
    rows = "".join(
        f"<tr><td>{environment_badge(r['environment'], small=True)}</td>"
        f"<td><a href='{PREFIX}/{quote(r['id'])}'><code>{escape(r['target'])}</code></a></td>"
        f"<td>{escape(r['principal'])}</td><td>{escape(r['action'])}</td><td>{age(r['created_at'])}</td>"
        f"<td>{escape(r['expires_at'])} ({age(r['expires_at'])})</td></tr>" for r in pending)
    return ("<table><thead><tr><th>Environment</th><th>Target</th><th>Principal</th><th>Action</th><th>Asked</th>"
            f"<th>Expires</th></tr></thead><tbody>{rows}</tbody></table>")


def render_lookalikes(record: ApprovalRecord) -> str:
    check: Mapping[str, Any] = record["check"]
    twins = check.get("lookalikes") or check.get("label", {}).get("lookalikes") or []
    if not twins:
        return "<p>No resource of the same name exists in another environment.</p>"
    items = "".join(f"<li>{escape(t.get('note') or lookalike_note(t))} "
                    f"{environment_badge(t['environment'], small=True)}"
                    "</li>" for t in twins)
    return (f"<section class=lookalikes><h2>Lookalikes: is this the one meant?</h2><ul>{items}</ul>"
            "<p>Same name, other environment: make sure the request names the right one.</p></section>")


def lookalike_note(twin: Mapping[str, Any]) -> str:
    return f"{twin.get('name')} also exists in {twin.get('environment')}: {twin.get('target')}"


def render_evidence(record: ApprovalRecord) -> str:
    label: Mapping[str, Any] = record["check"].get("label", {})
    rows = "".join(f"<tr><td>{escape(e['signal'])}</td><td>{escape(e['environment'])}</td>"
                   f"<td>{escape(e['source'])}</td><td>{escape(e['detail'])}</td></tr>"
                   for e in label.get("evidence", []))
    decided = escape(str(label.get("decided_by", "")))
    if not rows:
        return f"<p>No evidence: the target has no authoritative label ({decided}), so it is decided as production.</p>"
    return (f"<p>Decided by <b>{decided}</b>.</p><table><thead><tr><th>Signal</th><th>Environment</th>"
            f"<th>Source</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>")


def render_detail(record: ApprovalRecord, viewer: Viewer, note: str, *, problem: str | None = None) -> str:
    check: Mapping[str, Any] = record["check"]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in check.get("reasons", []))
    parts = [
        f"<p class=note>{escape(note)}</p>" if note else "",
        f"<p class=problem>{escape(problem)}</p>" if problem else "",
        f"<p>{environment_badge(record['environment'])}</p>",
        f"<p><b>Target</b> <code class=target>{escape(record['target'])}</code></p>",
        "<table>",
        row("Principal", escape(record["principal"])),
        row("Action", f"{escape(record['action'])} ({escape(str(check.get('action_class', '')))})"),
        *recovery_rows(check),
        row("Status", f"<b class=status>{escape(record['status'])}</b>"
                      + (f" by {escape(record['decided_by'] or '')}: {escape(record['decision_reason'] or '')}"
                         if record.get("decided_by") else "")),
        row("Asked", f"{escape(record['created_at'])} ({age(record['created_at'])})"),
        row("Expires", f"{escape(record['expires_at'])} ({age(record['expires_at'])})"),
        row("Parameters digest", f"<code>{escape(record['parameters_digest'])}</code>"),
        "</table>",
        render_lookalikes(record),
        f"<h2>Why it needs approval</h2><ul class=reasons>{reasons}</ul>",
        f"<h2>Evidence</h2>{render_evidence(record)}",
        render_form(record, viewer) if record["status"] == "pending" else "",
    ]
    return "".join(parts)


def recovery_rows(check: Mapping[str, Any]) -> list[str]:
    """Can the action be undone on this target, how, and what it would lose: from ``recovery`` (the target's
    scanned facts), else from the action's class. An unknown is shown, and treated, as irreversible."""
    recovery: Mapping[str, Any] | None = check.get("recovery")
    if recovery is None:
        undo = "yes" if check.get("reversible", False) else "<span class=irreversible>NO: this cannot be undone</span>"
        return [row("Reversible", undo)]
    verdict = recovery.get("reversible")
    why = "; ".join(escape(str(w)) for w in recovery.get("why") or [])
    if verdict is True:
        rows = [row("Reversible", "yes" + (f": {escape(str(recovery['how']))}" if recovery.get("how") else ""))]
    elif verdict is False:
        rows = [row("Reversible", "<span class=irreversible>NO: this cannot be undone</span>"
                                  + (f" ({why})" if why else ""))]
    else:
        rows = [row("Reversible", "<span class=irreversible>UNKNOWN: treated as irreversible</span>"
                                  + (f" ({why})" if why else ""))]
    if verdict is True and why:
        rows.append(row("Why", why))
    if recovery.get("loses"):
        rows.append(row("Would lose", escape(str(recovery["loses"]))))
    if recovery.get("destroys_data"):
        rows.append(row("Destroys data", "<span class=irreversible>yes: decided as a delete</span>"))
    return rows


def render_login(target: str, *, problem: str | None = None) -> str:
    shown = f"<p class=problem>{escape(problem)}</p>" if problem else ""
    return (f"{shown}<form method=post action='{PREFIX}/login?next={quote(target)}'>"
            "<p><label>Admin token <input type=password name=token required autocomplete=off></label></p>"
            "<p><button class=approve>Sign in</button></p></form>"
            "<p>Approving needs a token with role admin (api.tokens); the page keeps it in a cookie for this site "
            "only, for 8 hours. A one-time link from a notification needs no sign-in.</p>")


def row(name: str, value: str) -> str:
    return f"<tr><th>{escape(name)}</th><td>{value}</td></tr>"


def render_form(record: ApprovalRecord, viewer: Viewer) -> str:
    approval_id = record["id"]
    hidden = f"<input type=hidden name=csrf value='{escape(viewer.csrf(approval_id))}'>"
    if viewer.key:
        hidden += f"<input type=hidden name=key value='{escape(viewer.key)}'>"
    name = (f"<p>Approving as <b>{escape(viewer.name or '')}</b>.</p>" if viewer.kind == "token" else
            "<p><label>Your name (recorded as the approver) <input type=text name=name required "
            "maxlength=100></label></p>")
    return (f"<h2>Decide</h2><form method=post action='{PREFIX}/{quote(approval_id)}'>{hidden}{name}"
            "<p><label>Reason (required) <textarea name=reason required maxlength=1000 rows=3></textarea></label></p>"
            "<p><button class=approve name=decision value=approve>Approve once</button>"
            "<button class=deny name=decision value=deny>Deny</button></p></form>"
            "<p>An approval allows this exact call (same principal, action, target and parameters) once, before it "
            "expires.</p>")

