"""The answers both the front door and the routes give: JSON responses, errors through the one table, and the
label and check bodies (the front door answers them on its fast path, the FastAPI routes otherwise)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import Response
from pydantic import ValidationError

from envlabel.errors import EnvlabelError
from envlabel.records import CheckRecord, LabelRecord
from envlabel.service.core.authority import Authority, Caller
from envlabel.service.core.errors import InvalidRequest, outcome_of
from envlabel.service.core.query import Query
from envlabel.service.http.asgi import JSON, dumps, error_body
from envlabel.service.http.models import CheckRequest
from envlabel.targets import ACCEPTED_FORMS

log = logging.getLogger("envlabel.api")
Answer = tuple[int, LabelRecord | CheckRecord | dict[str, Any]]


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


def refused_response(exc: EnvlabelError) -> Response:
    status, body = error_answer(exc)
    return json_response(body, status)


def label_body(query: Query, target: str | None, explain: bool = False) -> Answer:
    """(status, body) of ``GET /v1/label``: the label JSON (with ``explain``, also its evidence chain as
    ``path``: one store read per container, so only when asked), or a 400 naming the accepted forms."""
    if not target:
        return 400, error_body("missing target", f"pass ?target=TARGET; {ACCEPTED_FORMS}")
    try:
        return 200, explained(query, target) if explain else query.label(target)
    except EnvlabelError as exc:
        return error_answer(exc)


def explained(query: Query, target: str) -> LabelRecord:
    from envlabel.service.core.explain import explain

    return explain(query, target)


def wants_explanation(value: str | None) -> bool:
    """``?explain=true`` (or 1, yes); anything else, or none, is the plain label."""
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def check_answer(authority: Authority, caller: Caller, request: CheckRequest) -> Answer:
    """(status, body) of ``POST /v1/check``: the check JSON for ``caller``, or a 400 naming the accepted forms. It
    may read a subtree, look a never-seen target up or write an approval request: call it off the event loop."""
    try:
        return 200, authority.check(caller, request.target, request.action, contents=request.contents,
                                    parameters=request.parameters)
    except EnvlabelError as exc:
        return error_answer(exc)


def check_seen_answer(authority: Authority, caller: Caller, request: CheckRequest) -> Answer | None:
    """:func:`check_answer` from the one indexed read, or None when it needs more (``contents``, a target never
    seen, which may be looked up, or an approval to spend or write)."""
    if request.contents:
        return None
    try:
        body = authority.check_seen(caller, request.target, request.action, request.parameters)
    except EnvlabelError as exc:
        return error_answer(exc)
    return None if body is None else (200, body)


def parse_check(body: bytes) -> CheckRequest | None:
    """The check request in a raw body; None when it is invalid, for FastAPI's 422."""
    try:
        return CheckRequest.model_validate_json(body)
    except ValidationError:
        return None
