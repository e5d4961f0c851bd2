"""The HTTP API's front door (:class:`Gate`): what every request needs before a route runs, and the two fast paths.

In order, for every request: without tokens, the loopback rule (a ``Host`` that names this machine, no
cross-origin writes: 421 / 403); with them, the bearer token and its role (401 / 403); then the caller
(:mod:`envlabel.service.http.callers`: the token's principal, the claimed principal, the mode, the interface:
a bad header is a 400), put in the scope for the routes; the body size limit and read deadline (413 / 408, the raw
ASGI plumbing is in :mod:`envlabel.service.http.asgi`); the latency histogram and JSON errors.

It answers the two calls agents make before every action itself, on the event loop (one indexed read, no thread
hop, no FastAPI dependency resolution): ``GET /v1/label`` and a valid ``POST /v1/check`` the Authority can answer
from a target already seen (:meth:`Authority.check_seen`); one with ``contents``, a never-seen target or an
approval to spend or write is answered from a worker thread, and an invalid one goes on to FastAPI for its 422.

Three kinds of path skip the bearer token: :data:`OPEN_PATHS` (probes, metrics, the API description); the
admission webhook over TLS (kube-apiserver sends none unless ``admission.require_token``); and the approval page
(:func:`is_page_path`), which signs its users in itself (an admin token in a cookie, or a one-time link).
The loopback rule of a server without tokens applies to every path, these included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from envlabel.service.core.authority import Authority
from envlabel.service.http.answers import (
    check_answer,
    check_seen_answer,
    label_body,
    parse_check,
    wants_explanation,
)
from envlabel.service.http.asgi import (
    call_with_status,
    error_body,
    header,
    internal_error,
    query_param,
    read_body,
    replay,
    send_json,
)
from envlabel.service.http.callers import CALLER, ROLE, BadCallerHeader, caller_for
from envlabel.service.http.tokens import ADMIN, BODY_METHODS, TokenRefused, Tokens, loopback_refusal

T = TypeVar("T")
#: routes anyone may call: probes, metrics scrapes and the API description
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
#: (method, path) that need the admin role, paths as OpenAPI writes them (``{name}``: one path segment);
#: every other route needs reader
ADMIN_ROUTES = frozenset({("POST", "/v1/overrides"), ("DELETE", "/v1/overrides"),
                          ("POST", "/v1/approvals/{approval_id}/approve"),
                          ("POST", "/v1/approvals/{approval_id}/deny")})
#: kube-apiserver's calls (``/v1/admission/kubernetes[/CLUSTER]``); over TLS they need no token unless
#: config ``admission.require_token`` (docs/kubernetes.md, "Admission")
ADMISSION_PATH = "/v1/admission/kubernetes"
#: the approval page (:mod:`envlabel.service.http.page`): it authenticates its own users (cookie or one-time link)
PAGE_PATH = "/approvals"
#: the paths the latency histogram names (others are ``other``), templated like ADMIN_ROUTES
_KNOWN_ROUTES = ("/v1/label", "/v1/labels", "/v1/check", "/v1/check-command", "/v1/resources", "/v1/findings",
                 "/v1/history", "/v1/overrides", "/v1/decisions", "/v1/decisions/would-block", "/v1/approvals",
                 "/v1/approvals/{approval_id}", "/v1/approvals/{approval_id}/approve",
                 "/v1/approvals/{approval_id}/deny", "/mcp", *sorted(OPEN_PATHS))


class GateMetrics(Protocol):
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...


def is_page_path(path: str) -> bool:
    """True for the approval page's paths, which need no bearer token (the page signs its users in itself)."""
    return path == PAGE_PATH or path.startswith(PAGE_PATH + "/")


def matches(template: str, path: str) -> bool:
    """True when ``path`` is ``template`` with each ``{name}`` one non-empty segment."""
    wanted, given = template.split("/"), path.split("/")
    return len(wanted) == len(given) and all(
        w == g or (w.startswith("{") and w.endswith("}") and g != "") for w, g in zip(wanted, given, strict=True))


def needs_admin(method: str, path: str) -> bool:
    return any(m == method and matches(template, path) for m, template in ADMIN_ROUTES)


def route_label(path: str) -> str:
    """The histogram's name for ``path``: a known route (templated), the admission webhook, the page, or other."""
    if path.startswith(ADMISSION_PATH):
        return ADMISSION_PATH
    if is_page_path(path):
        return PAGE_PATH
    return next((template for template in _KNOWN_ROUTES if matches(template, path)), "other")


class Gate:
    """The ASGI front door: the loopback rule, tokens, the caller, the body limit and deadline, latency metrics,
    and the ``GET /v1/label`` and ``POST /v1/check`` fast paths."""

    def __init__(self, app: ASGIApp, authority: Authority, tokens: Tokens, metrics: GateMetrics, max_body: int, *,
                 read_timeout_s: float = 10.0) -> None:
        self.app = app
        self.authority = authority
        self.tokens = tokens
        self.metrics = metrics
        self.max_body = max_body
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        status = await self._handle(scope, receive, send, method, path)
        self.metrics.observe_request(method, route_label(path), status, time.perf_counter() - start)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, method: str, path: str) -> int:
        refusal = self._refusal(scope, method, path)
        if refusal is not None:
            return await send_json(send, *refusal)
        if path == "/v1/label" and method == "GET":
            target = query_param(scope["query_string"], b"target")
            if wants_explanation(query_param(scope["query_string"], b"explain")):  # a read per container: a thread
                return await send_json(send, *await anyio.to_thread.run_sync(
                    _guarded, label_body, self.authority.query, target, True))
            return await send_json(send, *_guarded(label_body, self.authority.query, target))
        if method in BODY_METHODS:
            body = await read_body(receive, self.max_body, self.read_timeout_s)
            if isinstance(body, tuple):  # too large or too slow: the rest of it is never read, so close
                return await send_json(send, *body, close=True)
            if path == "/v1/check" and method == "POST" and (request := parse_check(body)) is not None:
                caller = scope[CALLER]
                answer = _guarded(check_seen_answer, self.authority, caller, request)
                if answer is None:  # a subtree, a lookup or an approval: in a worker thread, not on the event loop
                    answer = await anyio.to_thread.run_sync(_guarded, check_answer, self.authority, caller, request)
                return await send_json(send, *answer)
            receive = replay(body, receive)
        return await call_with_status(self.app, scope, receive, send)

    def _refusal(self, scope: Scope, method: str, path: str) -> tuple[int, dict[str, Any]] | None:
        """Why the request is refused before any route runs, or None (the caller is then in the scope)."""
        # before anything else, on every path: a token-less server answers only requests addressed to this machine
        refused = None if self.tokens.required else loopback_refusal(scope["headers"], method)
        if refused is not None:
            return refused[0], error_body(refused[1], refused[2])
        if path in OPEN_PATHS or is_page_path(path) or self._admission_over_tls(scope, path):
            return None
        return self._authorize(scope, method, path)

    def _admission_over_tls(self, scope: Scope, path: str) -> bool:
        """kube-apiserver calling the admission path over TLS: it sends no token unless configured to (managed
        clusters cannot be), so none is asked for unless ``admission.require_token``. Plain HTTP never skips."""
        return (scope.get("scheme") == "https" and not self.authority.config.admission.require_token
                and (path == ADMISSION_PATH or path.startswith(ADMISSION_PATH + "/")))

    def _authorize(self, scope: Scope, method: str, path: str) -> tuple[int, dict[str, Any]] | None:
        """The token's role against the route's (every caller is admin without tokens); then the caller."""
        token = None
        if self.tokens.required:
            try:
                token = self.tokens.match(header(scope, b"authorization"))
            except TokenRefused as refused:
                return 401, error_body("unauthorized", str(refused))
            scope["envlabel.token"] = token.name
            if needs_admin(method, path) and token.role != ADMIN:
                return 403, error_body("forbidden", f"token {token.name!r} has role {token.role}; {method} {path} "
                                                    "needs an admin token")
        scope[ROLE] = token.role if token is not None else ADMIN
        try:
            scope[CALLER] = caller_for(scope, token)
        except BadCallerHeader as bad:
            return bad.answer
        return None


def _guarded(answer: Callable[..., T], *args: Any) -> T | tuple[int, dict[str, Any]]:
    """Run a fast-path answer; an unexpected failure (the store, a bug) is a logged JSON 500."""
    try:
        return answer(*args)
    except Exception as exc:  # the front door must answer in JSON whatever broke behind it
        return internal_error(exc)
