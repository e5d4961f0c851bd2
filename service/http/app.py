"""The HTTP API (docs/contracts.md, "HTTP API"): FastAPI routes behind a small ASGI front door.

The front door (:class:`Gate`) does what every request needs and nothing more: without tokens, the
loopback rule (a ``Host`` that names this machine, no cross-origin writes: 421 / 403); bearer-token
roles; the body size limit and read deadline (413 / 408, the raw ASGI plumbing is in
:mod:`envlabel.service.http.asgi`); the latency histogram and JSON errors. It answers the two calls
agents make before every action itself, straight from the query layer on the event loop (one
indexed SQLite read, no thread hop, no FastAPI dependency resolution): ``GET /v1/label`` and a
valid ``POST /v1/check`` of a target already seen (an invalid one goes on to FastAPI for its 422; one
with ``contents`` or a never-seen target, which may be looked up over the network, is answered from a
worker thread). FastAPI still declares both routes, so they are in the OpenAPI document, and both paths
call :func:`label_body` / :func:`check_answer`. Everything else is ordinary FastAPI with pydantic bodies
(``extra="forbid"``) and errors shaped ``{"error", "message"}``.

Errors become answers through the one table of :mod:`envlabel.service.core.errors`. Other faces served
beside the API (the MCP server at ``/mcp``) are handed in as :class:`Mounted` by the runtime that
composes them; this module imports no other face and no runtime.

Routes that read one target answer on the event loop; routes whose cost grows with the estate
(listing, findings, overrides that relabel a subtree) are ``def`` routes run in the threadpool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import orjson
from fastapi import FastAPI, Request
from fastapi import Query as Param
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from envlabel.errors import EnvlabelError
from envlabel.records import CheckRecord, LabelRecord
from envlabel.service.core.admission import MalformedReview, review
from envlabel.service.core.check import check, check_seen
from envlabel.service.core.clock import utcnow
from envlabel.service.core.commands import check_command, remote_context
from envlabel.service.core.errors import InvalidRequest, outcome_of
from envlabel.service.core.history import history_json
from envlabel.service.core.listing import DEFAULT_LIMIT, MAX_LIMIT, FindingsCache, list_resources
from envlabel.service.core.overrides import list_overrides, parse_expiry, remove_override, set_override
from envlabel.service.core.query import Query
from envlabel.service.http.asgi import (
    JSON,
    accepts_gzip,
    call_with_status,
    dumps,
    error_body,
    header,
    internal_error,
    paced_response,
    query_param,
    read_body,
    replay,
    send_json,
)
from envlabel.service.http.models import (
    AdmissionReviewDoc,
    CheckCommandDoc,
    CheckCommandRequest,
    CheckDoc,
    CheckRequest,
    ErrorDoc,
    LabelDoc,
    LabelsDoc,
    LabelsRequest,
    OverrideRequest,
    ResourcesDoc,
    document_front_door,
    documented,
)
from envlabel.service.http.tokens import ADMIN, BODY_METHODS, READER, TokenRefused, Tokens, loopback_refusal
from envlabel.targets import ACCEPTED_FORMS

log = logging.getLogger("envlabel.api")
T = TypeVar("T")
#: routes anyone may call: probes, metrics scrapes and the API description
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
#: (method, path) that need the admin role; every other route needs reader
ADMIN_ROUTES = frozenset({("POST", "/v1/overrides"), ("DELETE", "/v1/overrides")})
_KNOWN_ROUTES = frozenset({"/v1/label", "/v1/labels", "/v1/check", "/v1/check-command", "/v1/resources",
                           "/v1/findings", "/v1/history", "/v1/overrides", "/mcp", *OPEN_PATHS})
#: kube-apiserver's calls (``/v1/admission/kubernetes[/CLUSTER]``); over TLS they need no token unless
#: config ``admission.require_token`` (docs/kubernetes.md, "Admission")
ADMISSION_PATH = "/v1/admission/kubernetes"


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type=JSON)


def error_response(status: int, error: str, message: str, **extra: Any) -> Response:
    return json_response(error_body(error, message, **extra), status)


def error_answer(exc: EnvlabelError) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error, from the one table; a bad field is also listed under ``problems``."""
    outcome = outcome_of(exc)
    if outcome.status >= 500:
        log.error("request failed", exc_info=exc)
    extra = {"problems": [{"field": f"query.{exc.field}", "message": str(exc)}]} \
        if isinstance(exc, InvalidRequest) else {}
    return outcome.status, error_body(outcome.error, str(exc), **extra)


Answer = tuple[int, LabelRecord | CheckRecord | dict[str, Any]]


def label_body(query: Query, target: str | None) -> Answer:
    """(status, body) of ``GET /v1/label``: the label JSON, or a 400 naming the accepted forms."""
    if not target:
        return 400, error_body("missing target", f"pass ?target=TARGET; {ACCEPTED_FORMS}")
    try:
        return 200, query.label(target)
    except EnvlabelError as exc:
        return error_answer(exc)


def check_answer(query: Query, request: CheckRequest) -> Answer:
    """(status, body) of ``POST /v1/check``: the check JSON, or a 400 naming the accepted forms. It may
    read a subtree or look a never-seen target up: call it off the event loop."""
    try:
        return 200, check(query, request.target, request.action, contents=request.contents)
    except EnvlabelError as exc:
        return error_answer(exc)


def check_seen_answer(query: Query, request: CheckRequest) -> Answer | None:
    """:func:`check_answer` from the one indexed read, or None when it needs more (``contents``, or a target
    never seen, which may be looked up)."""
    if request.contents:
        return None
    try:
        body = check_seen(query, request.target, request.action)
    except EnvlabelError as exc:
        return error_answer(exc)
    return None if body is None else (200, body)


def parse_check(body: bytes) -> CheckRequest | None:
    """The check request in a raw body; None when it is invalid, for FastAPI's 422."""
    try:
        return CheckRequest.model_validate_json(body)
    except ValidationError:
        return None


# -- the app --------------------------------------------------------------------------------------
class ApiMetrics(Protocol):
    """What the API records and exposes at ``/metrics`` (the runtime's Prometheus registry)."""

    @property
    def content_type(self) -> str: ...
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...
    def exposition(self) -> bytes: ...


@dataclass(frozen=True)
class Mounted:
    """Another face served beside the API: its routes, and what must run while the server serves."""

    routes: Sequence[BaseRoute]
    running: Callable[[], AbstractAsyncContextManager[Any]]


def create_app(query: Query, metrics: ApiMetrics, *, host: str = "127.0.0.1",
               mounted: Sequence[Mounted] = ()) -> Gate:
    """The API as an ASGI app. Raises EnvlabelError if ``host`` is not loopback and no tokens are configured."""
    config = query.config
    tokens = Tokens.for_host(config.api.tokens, host)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for face in mounted:
                await stack.enter_async_context(face.running())
            yield

    app = FastAPI(title="envlabel", version=_version(), lifespan=lifespan, redoc_url=None,
                  description="The authoritative environment of every resource, and the check agents call "
                              "before they act. Errors are {\"error\", \"message\"}; message says what to do.")
    _add_error_handlers(app)
    _add_query_routes(app, query)
    _add_override_routes(app, query)
    _add_admission_routes(app, query)
    _add_operation_routes(app, query, metrics)
    _document_front_door(app, tokens.required)
    for face in mounted:
        app.router.routes.extend(face.routes)
    return Gate(app, query, tokens, metrics, config.api.max_body_bytes,
                read_timeout_s=config.api.read_timeout.total_seconds())


def _document_front_door(app: FastAPI, tokens: bool) -> None:
    """Serve an OpenAPI document that also lists what the Gate answers before a route runs (401/421/403/408/413)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_front_door(generate(), open_paths=OPEN_PATHS, admin_routes=ADMIN_ROUTES,
                                                     body_methods=BODY_METHODS, tokens=tokens)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("envlabel")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_response(404, "not found", f"no route {request.method} {request.url.path}; the API is "
                                                    "described at /openapi.json")
        if exc.status_code == 405:
            answer = error_response(405, "method not allowed", f"{request.url.path} does not accept "
                                                               f"{request.method}; see /openapi.json")
            answer.headers["allow"] = ", ".join(_allowed(request))
            return answer
        return error_response(exc.status_code, "http error", str(exc.detail))

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(422, "invalid request", f"fix these fields and retry: {summary}", problems=problems)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EnvlabelError)
        status, body = error_answer(exc)
        return json_response(body, status)

    async def crashed(request: Request, exc: Exception) -> Response:
        status, body = internal_error(exc)
        return json_response(body, status)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(EnvlabelError, refused)


def _allowed(request: Request) -> list[str]:
    """Every method some route accepts at this path (Starlette's own Allow names only the first such route's)."""
    methods = {m for route in request.app.routes if route.matches(request.scope)[0] is not Match.NONE
               for m in getattr(route, "methods", None) or ()}
    return sorted(methods)


def _add_query_routes(app: FastAPI, query: Query) -> None:
    config = query.config
    findings = FindingsCache(query, dumps)
    sending_findings = anyio.Lock()  # large findings answers go out one at a time (paced_response)

    @app.get("/v1/label", responses=documented(LabelDoc, 400), tags=["labels"])
    async def get_label(target: str = Param(description="A target id in any accepted form.")) -> Response:
        """The label of one target. ``found: false`` / ``unknown`` means never seen: treat it as production."""
        status, body = label_body(query, target)
        return json_response(body, status)

    @app.post("/v1/labels", responses=documented(LabelsDoc, 400, 413), tags=["labels"])
    async def post_labels(request: LabelsRequest) -> Response:
        """Labels of many targets in one request, in the order given (at most ``api.max_batch``)."""
        if len(request.targets) > config.api.max_batch:
            return error_response(413, "batch too large", f"{len(request.targets)} targets; at most "
                                  f"{config.api.max_batch} per request (api.max_batch): split the batch")
        return json_response({"labels": query.labels(request.targets)})

    @app.post("/v1/check", responses=documented(CheckDoc, 400, 422), tags=["authority"])
    def post_check(request: CheckRequest) -> Response:
        """May ``action`` be done to ``target``? ``decision`` is allow, require_approval (ask ``approvers``)
        or deny; ``reasons`` say why. A target with no authoritative label is decided as production; one never
        seen inside a scanned container is looked up first. ``contents: true`` decides as the strictest of the
        target and everything stored below it."""
        status, body = check_answer(query, request)
        return json_response(body, status)

    @app.post("/v1/check-command", responses=documented(CheckCommandDoc, 400, 422), tags=["authority"])
    def post_check_command(request: CheckCommandRequest) -> Response:
        """May this shell command run? Every infrastructure operation in ``command`` (a command line) or
        ``argv`` is checked as ``POST /v1/check`` checks it; the strictest decision wins, and what could not be
        understood is decided fail closed (``unparsed``). The server reads none of its own files for a caller:
        plan a command that needs ``-f`` manifests, profiles or kubeconfig contexts where it runs
        (``envlabel check-command``, the coding-agent hooks)."""
        command = request.command if request.command is not None else request.argv or []
        try:
            answer = check_command(query, command, remote_context(config, request.environ),
                                   max_operations=config.api.max_batch, remote=True)
        except EnvlabelError as exc:
            status, body = error_answer(exc)
            return json_response(body, status)
        return json_response(answer)

    @app.get("/v1/resources", responses=documented(ResourcesDoc, 422), tags=["labels"])
    def get_resources(environment: str | None = None, provider: str | None = None,
                      limit: int = Param(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
                      cursor: str | None = None) -> Response:
        """Labeled resources in id order, a page at a time; follow ``next_cursor`` until it is null."""
        return paced_response(dumps(list_resources(query, environment, provider, limit, cursor)))

    @app.get("/v1/findings", tags=["audit"], responses={422: {"model": ErrorDoc}})
    async def get_findings(request: Request, kind: str | None = None, severity: str | None = None,
                           provider: str | None = None) -> Response:
        """Audit findings: conflicting, ambiguous, unlabeled, non-canonical, unrecognized, name-mismatch, stale.
        An answer is served again for a few seconds while no label, scan or override changed; a large one is
        sent gzip-compressed to a client that accepts it."""
        gzip_ok = accepts_gzip(request.headers.get("accept-encoding"))
        answer = findings.cached(kind, severity, provider, gzip_ok=gzip_ok)
        if answer is None:  # the audit (or compressing its answer) runs in a worker thread
            answer = await anyio.to_thread.run_sync(partial(findings.encoded, kind, severity, provider,
                                                            gzip_ok=gzip_ok))
        return paced_response(*answer, one_at_a_time=sending_findings)

    @app.get("/v1/history", tags=["labels"], responses={400: {"model": ErrorDoc}})
    def get_history(target: str) -> Response:
        """Every label change of ``target``, oldest first (an empty list if it was never seen)."""
        return json_response({"target": target, "history": history_json(query, target)})



def _add_override_routes(app: FastAPI, query: Query) -> None:
    @app.get("/v1/overrides", tags=["overrides"])
    def get_overrides(include_all: bool = Param(False, alias="all")) -> Response:
        """Overrides in force (``?all=true``: expired ones too, and every change event)."""
        return json_response(list_overrides(query, include_all))

    @app.post("/v1/overrides", tags=["overrides"], responses={400: {"model": ErrorDoc}, 403: {"model": ErrorDoc}})
    def post_override(request: Request, body: OverrideRequest) -> Response:
        """Decide a target's environment (admin). For a container it decides everything below it too."""
        now = utcnow()
        expires_at = parse_expiry(body.expires, now) if body.expires else None
        return json_response(set_override(query, body.target, body.environment, reason=body.reason,
                                          author=body.author or _caller(request), expires_at=expires_at, now=now))

    @app.delete("/v1/overrides", tags=["overrides"], responses={400: {"model": ErrorDoc}, 404: {"model": ErrorDoc},
                                                               403: {"model": ErrorDoc}})
    def delete_override(request: Request, target: str, reason: str = "", author: str | None = None) -> Response:
        """Remove the override on ``target`` (admin); its own and inherited signals count again."""
        return json_response(remove_override(query, target, author=author or _caller(request), reason=reason))



def _add_admission_routes(app: FastAPI, query: Query) -> None:
    async def admit(request: Request, cluster: str | None) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error_response(400, "malformed admission review", f"the body is not JSON ({exc}): send an "
                                  "admission.k8s.io/v1 AdmissionReview")
        try:  # a never-seen target may be looked up over the network: off the event loop
            return json_response(await anyio.to_thread.run_sync(review, query, body, cluster))
        except MalformedReview as exc:
            return error_response(400, "malformed admission review", str(exc))

    responses = documented(AdmissionReviewDoc, 400)

    @app.post(ADMISSION_PATH, tags=["admission"], responses=responses)
    async def post_admission(request: Request) -> Response:
        """kube-apiserver's ValidatingWebhook call (admission.k8s.io/v1 AdmissionReview) when one kubernetes
        source is configured: CREATE, UPDATE, DELETE and CONNECT decided by the check; refused with a 403 status
        citing the environment and evidence. Over TLS no token is needed unless admission.require_token."""
        return await admit(request, None)

    @app.post(ADMISSION_PATH + "/{cluster}", tags=["admission"], responses=responses)
    async def post_admission_cluster(request: Request, cluster: str) -> Response:
        """The ValidatingWebhook call for the kubernetes source whose cluster is ``cluster``."""
        return await admit(request, cluster)


def _add_operation_routes(app: FastAPI, query: Query, metrics: ApiMetrics) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """The process answers."""
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["operations"], responses={503: {"model": ErrorDoc}})
    def readyz() -> Response:
        """The store opens and holds data or a completed scan."""
        try:
            query.store.probe()  # the schema and every table answer; a corruption any read met stays reported
            scans = query.store.last_scans()
            ready = any(s["complete"] for s in scans) or bool(query.store.list_labels(limit=1))
        except EnvlabelError as exc:  # a StoreError says what broke and what to do
            return error_response(503, "store unavailable", str(exc))
        except Exception as exc:  # any other store failure means not ready too; say which
            return error_response(503, "store unavailable", f"{type(exc).__name__}: {exc}; check the store URL "
                                  "and that the database is reachable")
        if not ready:
            return error_response(503, "not ready", "no completed scan and no data yet; run `envlabel scan` or "
                                  "wait for the first scheduled scan")
        return json_response({"status": "ready", "scans": len(scans)})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def get_metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.exposition(), media_type=metrics.content_type)


def _caller(request: Request) -> str:
    name = request.scope.get("envlabel.token")
    return f"token:{name}" if name else "api"


class Gate:
    """The ASGI front door: the loopback rule, tokens, the body limit and deadline, latency metrics, and the
    ``GET /v1/label`` and ``POST /v1/check`` fast paths."""

    def __init__(self, app: ASGIApp, query: Query, tokens: Tokens, metrics: ApiMetrics, max_body: int, *,
                 read_timeout_s: float = 10.0) -> None:
        self.app = app
        self.query = query
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
        route = path if path in _KNOWN_ROUTES else ADMISSION_PATH if path.startswith(ADMISSION_PATH) else "other"
        self.metrics.observe_request(method, route, status, time.perf_counter() - start)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, method: str, path: str) -> int:
        # before anything else, on every path: a token-less server answers only requests addressed to this machine
        refused = None if self.tokens.required else loopback_refusal(scope["headers"], method)
        refusal = None if refused is None else (refused[0], error_body(refused[1], refused[2]))
        if refusal is None and path not in OPEN_PATHS and not self._admission_over_tls(scope, path):
            refusal = self._authorize(scope, method, path)
        if refusal is not None:
            return await send_json(send, *refusal)
        if path == "/v1/label" and method == "GET":
            target = query_param(scope["query_string"], b"target")
            return await send_json(send, *_guarded(label_body, self.query, target))
        if method in BODY_METHODS:
            body = await read_body(receive, self.max_body, self.read_timeout_s)
            if isinstance(body, tuple):  # too large or too slow: the rest of it is never read, so close
                return await send_json(send, *body, close=True)
            if path == "/v1/check" and method == "POST" and (request := parse_check(body)) is not None:
                answer = _guarded(check_seen_answer, self.query, request)
                if answer is None:  # a subtree read or a lookup: in a worker thread, never on the event loop
                    answer = await anyio.to_thread.run_sync(_guarded, check_answer, self.query, request)
                return await send_json(send, *answer)
            receive = replay(body, receive)
        return await call_with_status(self.app, scope, receive, send)

    def _admission_over_tls(self, scope: Scope, path: str) -> bool:
        """kube-apiserver calling the admission path over TLS: it sends no token unless configured to (managed
        clusters cannot be), so none is asked for unless ``admission.require_token``. Plain HTTP never skips."""
        return (scope.get("scheme") == "https" and not self.query.config.admission.require_token
                and (path == ADMISSION_PATH or path.startswith(ADMISSION_PATH + "/")))

    def _authorize(self, scope: Scope, method: str, path: str) -> tuple[int, dict[str, Any]] | None:
        if not self.tokens.required:
            return None
        try:
            token = self.tokens.match(header(scope, b"authorization"))
        except TokenRefused as refused:
            return 401, error_body("unauthorized", str(refused))
        scope["envlabel.token"] = token.name
        needed = ADMIN if (method, path) in ADMIN_ROUTES else READER
        if needed == ADMIN and token.role != ADMIN:
            return 403, error_body("forbidden", f"token {token.name!r} has role {token.role}; {method} {path} "
                                                "needs an admin token")
        return None


def _guarded(answer: Callable[..., T], *args: Any) -> T | tuple[int, dict[str, Any]]:
    """Run a fast-path answer; an unexpected failure (the store, a bug) is a logged JSON 500."""
    try:
        return answer(*args)
    except Exception as exc:  # the front door must answer in JSON whatever broke behind it
        return internal_error(exc)


