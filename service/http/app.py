"""The HTTP API (docs/contracts.md, "HTTP API"): FastAPI routes behind a small ASGI front door.

The front door (:class:`envlabel.service.http.gate.Gate`) does what every request needs before a route runs:
the loopback rule or the bearer token, the caller (who acts, in which mode), the body limit and deadline, the
latency histogram, and the ``GET /v1/label`` / ``POST /v1/check`` fast paths. FastAPI still declares both routes,
so they are in the OpenAPI document, and both paths call :func:`label_body` / :func:`check_answer`. Everything
else is ordinary FastAPI with pydantic bodies (``extra="forbid"``) and errors shaped ``{"error", "message"}``.
Every check is asked of the :class:`Authority` for the caller the front door put in the scope
(:mod:`envlabel.service.http.callers`); the decision log and approvals have their own route modules
(:mod:`envlabel.service.http.decisions_routes`, :mod:`envlabel.service.http.approvals_routes`), and the approval
page its own (:mod:`envlabel.service.http.page`).

Errors become answers through the one table of :mod:`envlabel.service.core.errors`. Other faces served
beside the API (the MCP server at ``/mcp``) are handed in as :class:`Mounted` by the runtime that
composes them; this module imports no other face and no runtime.

Routes that read one target answer on the event loop; routes whose cost grows with the estate
(listing, findings, overrides that relabel a subtree) are ``def`` routes run in the threadpool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import anyio
import anyio.to_thread
import orjson
from fastapi import FastAPI, Request
from fastapi import Query as Param
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from envlabel.errors import EnvlabelError
from envlabel.service.core.admission import MalformedReview, review
from envlabel.service.core.authority import Authority
from envlabel.service.core.clock import utcnow
from envlabel.service.core.commands import check_command, remote_context
from envlabel.service.core.history import history_json
from envlabel.service.core.listing import DEFAULT_LIMIT, MAX_LIMIT, FindingsCache, list_resources
from envlabel.service.core.overrides import list_overrides, parse_expiry, remove_override, set_override
from envlabel.service.core.query import Query
from envlabel.service.http.answers import (
    Answer,
    check_answer,
    check_seen_answer,
    error_answer,
    error_response,
    json_response,
    label_body,
    parse_check,
    refused_response,
)
from envlabel.service.http.approvals_routes import add_approval_routes
from envlabel.service.http.asgi import accepts_gzip, dumps, internal_error, paced_response
from envlabel.service.http.callers import caller_of
from envlabel.service.http.decisions_routes import add_decision_routes
from envlabel.service.http.gate import ADMIN_ROUTES, ADMISSION_PATH, OPEN_PATHS, Gate
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
from envlabel.service.http.tokens import BODY_METHODS, Tokens

#: kept importable from here: the front door's names and the shared answers
__all__ = ["ADMIN_ROUTES", "ADMISSION_PATH", "OPEN_PATHS", "Answer", "ApiMetrics", "Gate", "Mounted",
           "check_answer", "check_seen_answer", "create_app", "error_answer", "json_response", "label_body",
           "parse_check"]


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


def create_app(authority: Authority | Query, metrics: ApiMetrics, *, host: str = "127.0.0.1",
               mounted: Sequence[Mounted] = (), page: Sequence[BaseRoute] = ()) -> Gate:
    """The API as an ASGI app answering for ``authority`` (a bare Query: an Authority with no decision log and no
    notifications); ``page``: the approval page's routes (:func:`envlabel.service.http.page.page_routes`), served
    at ``/approvals``. Raises EnvlabelError if ``host`` is not loopback and no tokens are configured."""
    authority = authority if isinstance(authority, Authority) else Authority(authority)
    query = authority.query
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
    _add_query_routes(app, authority)
    _add_override_routes(app, query)
    add_decision_routes(app, query)
    add_approval_routes(app, authority)
    _add_admission_routes(app, authority)
    _add_operation_routes(app, query, metrics)
    _document_front_door(app, tokens.required)
    app.router.routes.extend(page)
    for face in mounted:
        app.router.routes.extend(face.routes)
    return Gate(app, authority, tokens, metrics, config.api.max_body_bytes,
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
        return refused_response(exc)

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


def _add_query_routes(app: FastAPI, authority: Authority) -> None:
    query = authority.query
    config = query.config
    findings = FindingsCache(query, dumps)
    sending_findings = anyio.Lock()  # large findings answers go out one at a time (paced_response)

    @app.get("/v1/label", responses=documented(LabelDoc, 400), tags=["labels"])
    async def get_label(target: str = Param(description="A target id in any accepted form."),
                        explain: bool = Param(False, description="Also the evidence chain as path: the target, "
                                              "then each container above it with its own signal or none.")) -> Response:
        """The label of one target. ``found: false`` / ``unknown`` means never seen: treat it as production."""
        status, body = label_body(query, target, explain)
        return json_response(body, status)

    @app.post("/v1/labels", responses=documented(LabelsDoc, 400, 413), tags=["labels"])
    async def post_labels(request: LabelsRequest) -> Response:
        """Labels of many targets in one request, in the order given (at most ``api.max_batch``)."""
        if len(request.targets) > config.api.max_batch:
            return error_response(413, "batch too large", f"{len(request.targets)} targets; at most "
                                  f"{config.api.max_batch} per request (api.max_batch): split the batch")
        return json_response({"labels": query.labels(request.targets)})

    @app.post("/v1/check", responses=documented(CheckDoc, 400, 422), tags=["authority"])
    def post_check(http: Request, request: CheckRequest) -> Response:
        """May ``action`` be done to ``target``? ``decision`` is allow, require_approval (ask ``approvers``)
        or deny; ``reasons`` say why. A target with no authoritative label is decided as production; one never
        seen inside a scanned container is looked up first. ``contents: true`` decides as the strictest of the
        target and everything stored below it. ``parameters`` (the call's own parameters) bind an approval to
        exactly this call. The principal is the token's (``X-Envlabel-Principal`` can only narrow it);
        ``X-Envlabel-Mode: audit`` decides and logs without enforcing (the answer says ``mode: audit``)."""
        status, body = check_answer(authority, caller_of(http.scope), request)
        return json_response(body, status)

    @app.post("/v1/check-command", responses=documented(CheckCommandDoc, 400, 422), tags=["authority"])
    def post_check_command(http: Request, request: CheckCommandRequest) -> Response:
        """May this shell command run? Every infrastructure operation in ``command`` (a command line) or
        ``argv`` is checked as ``POST /v1/check`` checks it; the strictest decision wins, and what could not be
        understood is decided fail closed (``unparsed``). The server reads none of its own files for a caller:
        plan a command that needs ``-f`` manifests, profiles or kubeconfig contexts where it runs
        (``envlabel check-command``, the coding-agent hooks)."""
        command = request.command if request.command is not None else request.argv or []
        caller = caller_of(http.scope)
        if caller.interface == "http":  # a hook or guard that said so keeps its name in the log
            caller = replace(caller, interface="check-command")
        try:
            answer = check_command(authority, command, remote_context(config, request.environ), caller=caller,
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
        """Audit findings: conflicting, ambiguous, unlabeled, non-canonical, unrecognized, name-mismatch, stale,
        unrecoverable (production without deletion protection nor backups).
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



def _add_admission_routes(app: FastAPI, authority: Authority) -> None:
    async def admit(request: Request, cluster: str | None) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error_response(400, "malformed admission review", f"the body is not JSON ({exc}): send an "
                                  "admission.k8s.io/v1 AdmissionReview")
        try:  # a never-seen target may be looked up over the network: off the event loop
            return json_response(await anyio.to_thread.run_sync(review, authority, body, cluster))
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
