"""The agent-side client of the envlabel HTTP API.

    from envlabel.client import Client
    envlabel = Client()                       # ENVLABEL_URL, ENVLABEL_TOKEN
    envlabel.label("arn:aws:rds:us-east-1:222222222222:db:orders-db")["environment"]
    envlabel.require("arn:aws:rds:us-east-1:222222222222:db:orders-db", "rds:DeleteDBInstance")

One ``httpx.Client`` per :class:`Client` keeps the connection alive, so a
guard's check costs one round trip on an open socket. It is safe to share
between threads.

Errors (all :class:`envlabel.errors.EnvlabelError`):

- no answer (refused, timed out, 502/503/504) -> ``UnreachableError``
  telling the caller to start ``envlabel serve`` or fix ``ENVLABEL_URL``;
- a malformed target (400) -> ``TargetError`` with the server's message;
- any other refusal (401/403, 5xx) -> :class:`ServiceError` with the status;
- ``require`` on a ``deny`` / ``require_approval`` decision ->
  ``ActionDenied`` / ``ApprovalRequired`` carrying the check JSON.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from envlabel.errors import ActionDenied, ApprovalRequired, EnvlabelError, TargetError, UnreachableError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 10.0
#: decisions from least to most restrictive; several checks resolve to the strictest
DECISIONS = ("allow", "require_approval", "deny")
_UNAVAILABLE = frozenset({502, 503, 504})


class ServiceError(EnvlabelError):
    """envlabel answered but refused the request; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


def strictest(checks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The check with the most restrictive decision (an unrecognized decision counts as ``deny``)."""
    ranked = [(_rank(c.get("decision")), i, dict(c)) for i, c in enumerate(checks)]
    if not ranked:
        raise ValueError("strictest() needs at least one check")
    return max(ranked, key=lambda r: (r[0], -r[1]))[2]


def raise_for_decision(check: dict[str, Any]) -> dict[str, Any]:
    """Return ``check`` if it allows the action, else raise ActionDenied / ApprovalRequired."""
    decision = check.get("decision")
    if decision == "allow":
        return check
    if decision == "require_approval":
        raise ApprovalRequired(check)
    raise ActionDenied(check)  # "deny", and anything we do not understand: fail closed


def _rank(decision: object) -> int:
    return DECISIONS.index(decision) if decision in DECISIONS else len(DECISIONS) - 1


class Client:
    """A connection to one envlabel server.

    ``url`` defaults to ``$ENVLABEL_URL`` (else http://127.0.0.1:8080), ``token`` to
    ``$ENVLABEL_TOKEN``. ``transport`` is passed to httpx (for example an
    ``httpx.WSGITransport``/``ASGITransport`` to talk to an in-process app).
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("ENVLABEL_URL") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise EnvlabelError(f"envlabel URL {self.url!r} must start with http:// or https:// "
                                "(check ENVLABEL_URL)")
        token = token if token is not None else os.environ.get("ENVLABEL_TOKEN")
        headers = {"Accept": "application/json", "User-Agent": "envlabel-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def label(self, target: str) -> dict[str, Any]:
        """The label JSON of ``target`` (``found: false`` and ``unknown`` if never seen)."""
        body: dict[str, Any] = self._request("GET", "/v1/label", params={"target": target})
        return body

    def labels(self, targets: Iterable[str]) -> list[dict[str, Any]]:
        """The label JSON of each target, in the order given, in one request."""
        body = self._request("POST", "/v1/labels", json={"targets": list(targets)})
        # accept both a bare list and {"labels": [...]}
        items: list[dict[str, Any]] = body["labels"] if isinstance(body, dict) else body
        return items

    def check(self, target: str, action: str) -> dict[str, Any]:
        """The check JSON: may ``action`` (``rds:DeleteDBInstance``, ``delete``...) be done to ``target``?"""
        body: dict[str, Any] = self._request("POST", "/v1/check", json={"target": target, "action": action})
        return body

    def require(self, target: str, action: str) -> dict[str, Any]:
        """The check JSON if the action is allowed; raises ActionDenied / ApprovalRequired otherwise."""
        return raise_for_decision(self.check(target, action))

    def require_all(self, targets: Iterable[str], action: str) -> dict[str, Any]:
        """Check every distinct target; the strictest decision wins (raised as by :meth:`require`)."""
        distinct = list(dict.fromkeys(targets))
        if not distinct:
            raise ValueError("require_all() needs at least one target")
        return raise_for_decision(strictest(self.check(t, action) for t in distinct))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, DNS, timeouts
            raise UnreachableError(
                f"envlabel at {self.url} did not answer ({type(exc).__name__}: {exc}); start it with "
                "`envlabel serve`, or set ENVLABEL_URL to where it runs") from exc
        if response.status_code < 400:
            try:
                return response.json()
            except ValueError as exc:
                raise ServiceError(f"envlabel at {self.url} answered {method} {path} with a body that is not "
                                   "JSON; is ENVLABEL_URL pointing at envlabel?", response.status_code) from exc
        detail = _detail(response)
        status = response.status_code
        if status == 400:
            raise TargetError(detail)
        if status in _UNAVAILABLE:
            raise UnreachableError(f"envlabel at {self.url} is unavailable ({status}: {detail}); check that "
                                   "`envlabel serve` is running and healthy")
        if status in (401, 403):
            raise ServiceError(f"envlabel at {self.url} refused the request ({status}: {detail}); set "
                               "ENVLABEL_TOKEN to a token listed in the server's api.tokens", status)
        raise ServiceError(f"envlabel at {self.url} answered {method} {path} with {status}: {detail}", status)


def _detail(response: httpx.Response) -> str:
    """The server's error message: envlabel's ``message``, FastAPI's ``detail``, ``error``, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if key in body:
                value = body[key]
                return value if isinstance(value, str) else str(value)
    return str(body)[:300]
