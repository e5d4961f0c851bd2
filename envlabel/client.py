"""The agent-side client of the envlabel HTTP API.

    from envlabel.client import Client
    envlabel = Client()                       # ENVLABEL_URL, ENVLABEL_TOKEN
    envlabel.label("arn:aws:rds:us-east-1:222222222222:db:orders-db")["environment"]
    envlabel.require("arn:aws:rds:us-east-1:222222222222:db:orders-db", "rds:DeleteDBInstance")

One ``httpx.Client`` per :class:`Client` keeps the connection alive, so a
guard's check costs one round trip on an open socket. It is safe to share
between threads.

Every call has one overall deadline (``timeout``, default ``$ENVLABEL_TIMEOUT``
else 5 s), and :meth:`Client.deadline` stretches one deadline over several
calls (a guard's whole check). httpx's own timeouts restart with every byte
read, so a server trickling a byte a second could hold a call forever; the
default transport caps every connect, read and write at the time left instead.

Errors (all :class:`envlabel.errors.EnvlabelError`):

- no answer (refused, timed out, 502/503/504, or not all of it within the
  deadline) -> ``UnreachableError`` telling the caller to start ``envlabel serve``
  or fix ``ENVLABEL_URL``;
- an answer that is not the JSON asked for (HTML, a list where a check was
  expected) -> :class:`ServiceError`;
- a malformed target (400) -> ``TargetError`` with the server's message;
- any other refusal (401/403, 5xx) -> :class:`ServiceError` with the status;
- ``require`` on a ``deny`` / ``require_approval`` decision ->
  ``ActionDenied`` / ``ApprovalRequired`` carrying the check JSON (and, for
  the latter, the id of the approval request the server created or reused);
  an answer in ``mode: audit`` (shadow mode) is let through with a warning.

Who acts and how: ``X-Envlabel-Principal`` (``principal=``, else
``$ENVLABEL_PRINCIPAL``; a token's principal always wins on the server, a claim
only narrows), ``X-Envlabel-Mode`` (``$ENVLABEL_MODE``: enforce or audit) and
``X-Envlabel-Interface`` (``http``; the guards send ``guard``, the hooks ``hook``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, get_args
from urllib.parse import quote

import httpcore
import httpx

from envlabel.errors import ActionDenied, ApprovalRequired, EnvlabelError, TargetError, UnreachableError
from envlabel.records import Interface, Mode

log = logging.getLogger("envlabel.client")

DEFAULT_URL = "http://127.0.0.1:8080"
#: seconds one call (or one guard check, however many requests it makes) may take in all
DEFAULT_TIMEOUT = 5.0
#: decisions from least to most restrictive; several checks resolve to the strictest
DECISIONS = ("allow", "require_approval", "deny")
_UNAVAILABLE = frozenset({502, 503, 504})
MODES: tuple[Mode, ...] = get_args(Mode)
INTERFACES: tuple[Interface, ...] = get_args(Interface)
#: an approval request in one of these states will not change any more: waiting for it is over
SETTLED = frozenset({"approved", "denied", "expired", "spent"})
#: seconds between polls of a pending approval: doubling from the first to the last
POLL_FIRST, POLL_LAST = 0.25, 5.0


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
    """Return ``check`` if it allows the action, else raise ActionDenied / ApprovalRequired.

    An answer in audit mode (shadow mode: config ``mode: audit`` or ``ENVLABEL_MODE=audit``) is returned
    whatever it decided, with a logged warning saying what enforcement would have done: a team can roll
    envlabel out and read what it would stop before it stops anything."""
    decision = check.get("decision")
    if decision == "allow":
        return check
    if check.get("mode") == "audit":
        log.warning("%s", audit_warning(check))
        return check
    if decision == "require_approval":
        raise ApprovalRequired(check)
    raise ActionDenied(check)  # "deny", and anything we do not understand: fail closed


def audit_warning(check: Mapping[str, Any]) -> str:
    """"envlabel audit mode: would have denied rds:DeleteDBInstance on ARN (production): reasons"."""
    would = {"require_approval": "required approval for", "deny": "denied"}.get(str(check.get("decision")),
                                                                                 "denied")
    reasons = "; ".join(str(r) for r in check.get("reasons") or [])
    return (f"envlabel audit mode: would have {would} {check.get('action')} on {check.get('target')} "
            f"({check.get('environment')}): {reasons}")


def principal_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``ENVLABEL_PRINCIPAL``, or None when unset or empty."""
    raw = (os.environ if environ is None else environ).get("ENVLABEL_PRINCIPAL", "").strip()
    return raw or None


def mode_from_env(environ: Mapping[str, str] | None = None) -> Mode | None:
    """``ENVLABEL_MODE`` (enforce or audit), None when unset; anything else is an error saying what to set."""
    raw = (os.environ if environ is None else environ).get("ENVLABEL_MODE", "").strip().lower()
    if not raw:
        return None
    for mode in MODES:
        if raw == mode:
            return mode
    raise EnvlabelError(f"ENVLABEL_MODE={raw!r} is not a mode; set it to one of {', '.join(MODES)} "
                        "(audit: report what would be blocked, block nothing), or unset it")


def _checked_principal(principal: str) -> str:
    """A principal fit for a header: visible ASCII characters, no spaces (as the config's principal names)."""
    if not principal.isascii() or not principal.isprintable() or any(c.isspace() for c in principal) \
            or len(principal) > 256:
        raise EnvlabelError(f"principal {principal!r} (ENVLABEL_PRINCIPAL or principal=) must be at most 256 "
                            "visible ASCII characters without spaces, such as ci-deployer or user:alice")
    return principal


def _rank(decision: object) -> int:
    return DECISIONS.index(decision) if decision in DECISIONS else len(DECISIONS) - 1


def timeout_from_env(environ: Mapping[str, str] | None = None) -> float:
    """The deadline in seconds from ``ENVLABEL_TIMEOUT`` (``5``, ``2.5``, ``5s``), else :data:`DEFAULT_TIMEOUT`."""
    raw = (os.environ if environ is None else environ).get("ENVLABEL_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw.removesuffix("s"))
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise EnvlabelError(f"ENVLABEL_TIMEOUT={raw!r} is not a number of seconds; set it to a positive number "
                            f"such as 5 or 2.5 (default {DEFAULT_TIMEOUT:g})")
    return seconds


#: monotonic time by which the current call (or guard check) must be answered; per thread and task
_DEADLINE: ContextVar[float | None] = ContextVar("envlabel_deadline", default=None)


def _time_left() -> float | None:
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def _capped(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of the deadline; past it, raise as a read timeout would."""
    left = _time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise httpcore.ReadTimeout("the envlabel deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every read and write waits at most until the deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _capped(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _capped(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _capped(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, wrapped so no connect, read or write outlives the deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_tcp(host, port, _capped(timeout), local_address,
                                                         socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_unix_socket(path, _capped(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _deadline_transport() -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport()
    # httpx offers no public way to choose httpcore's network backend; the pool it builds is replaced by the
    # same pool over our backend (TLS defaults as httpx's own)
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                              network_backend=_DeadlineBackend())
    return transport


class Client:
    """A connection to one envlabel server.

    ``url`` defaults to ``$ENVLABEL_URL`` (else http://127.0.0.1:8080), ``token`` to
    ``$ENVLABEL_TOKEN``, ``timeout`` (seconds, the overall deadline of one call) to ``$ENVLABEL_TIMEOUT``
    (else 5), ``principal`` (who acts, a claim) to ``$ENVLABEL_PRINCIPAL``, ``mode`` to ``$ENVLABEL_MODE``;
    ``interface`` is what the decision log records the checks as coming from (``guard``, ``hook``).
    ``transport`` is passed to httpx (for example an ``httpx.WSGITransport``/``ASGITransport`` to
    talk to an in-process app); a transport of your own is held to the deadline only between requests.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float | None = None,
                 transport: httpx.BaseTransport | None = None, *, principal: str | None = None,
                 interface: Interface = "http", mode: Mode | None = None) -> None:
        self.url = (url or os.environ.get("ENVLABEL_URL") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise EnvlabelError(f"envlabel URL {self.url!r} must start with http:// or https:// "
                                "(check ENVLABEL_URL)")
        token = token if token is not None else os.environ.get("ENVLABEL_TOKEN")
        headers = {"Accept": "application/json", "User-Agent": "envlabel-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(self._identity_headers(principal, interface, mode))
        self.timeout = timeout_from_env() if timeout is None else timeout
        if not self.timeout > 0:
            raise EnvlabelError(f"envlabel client timeout {self.timeout!r} must be a positive number of seconds")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout,
                                  transport=transport or _deadline_transport())

    @staticmethod
    def _identity_headers(principal: str | None, interface: str, mode: Mode | None) -> dict[str, str]:
        """Who acts (a claim the server weighs against the token), the caller's mode, and where it asks from."""
        if interface not in INTERFACES:
            raise EnvlabelError(f"envlabel client interface {interface!r} is not one of {', '.join(INTERFACES)}")
        headers: dict[str, str] = {"X-Envlabel-Interface": interface}
        claimed = principal.strip() if principal is not None else principal_from_env()
        if claimed:
            headers["X-Envlabel-Principal"] = _checked_principal(claimed)
        mode = mode or mode_from_env()
        if mode is not None:
            if mode not in MODES:
                raise EnvlabelError(f"envlabel client mode {mode!r} is not one of {', '.join(MODES)}")
            headers["X-Envlabel-Mode"] = mode
        return headers

    @contextmanager
    def deadline(self) -> Iterator[None]:
        """Hold every request made inside to one deadline, ``timeout`` seconds from now (a deadline already
        running, in this thread or task, is kept: the outermost one counts)."""
        if _DEADLINE.get() is not None:
            yield
            return
        token = _DEADLINE.set(time.monotonic() + self.timeout)
        try:
            yield
        finally:
            _DEADLINE.reset(token)

    def label(self, target: str) -> dict[str, Any]:
        """The label JSON of ``target`` (``found: false`` and ``unknown`` if never seen)."""
        return _object(self._request("GET", "/v1/label", params={"target": target}), "label", self.url)

    def labels(self, targets: Iterable[str]) -> list[dict[str, Any]]:
        """The label JSON of each target, in the order given, in one request."""
        body = self._request("POST", "/v1/labels", json={"targets": list(targets)})
        # accept both a bare list and {"labels": [...]}
        items = body.get("labels") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise ServiceError(f"envlabel at {self.url} answered POST /v1/labels with no list of labels; is "
                               "ENVLABEL_URL pointing at envlabel?", 200)
        return [_object(item, "label", self.url) for item in items]

    def check(self, target: str, action: str, contents: bool = False,
              parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The check JSON: may ``action`` (``rds:DeleteDBInstance``, ``delete``...) be done to ``target``?

        ``contents=True`` (an account, project or namespace as ``target``) decides as the strictest label found
        in it, for an action that may touch anything inside. ``parameters`` (JSON) are the call's own: an
        approval is bound to their digest, so only the very call that was approved is allowed by it."""
        body: dict[str, Any] = {"target": target, "action": action}
        if contents:
            body["contents"] = True
        if parameters is not None:
            body["parameters"] = dict(parameters)
        check = _object(self._request("POST", "/v1/check", json=body), "check", self.url)
        if not isinstance(check.get("decision"), str):
            raise ServiceError(f"envlabel at {self.url} answered POST /v1/check without a decision; is "
                               "ENVLABEL_URL pointing at envlabel?", 200)
        return check

    def require(self, target: str, action: str, contents: bool = False,
                parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The check JSON if the action is allowed; raises ActionDenied / ApprovalRequired otherwise."""
        return raise_for_decision(self.check(target, action, contents, parameters))

    def require_all(self, targets: Iterable[str], action: str, contents: bool = False,
                    parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check every distinct target, all within one deadline; the strictest decision wins (raised as by
        :meth:`require`)."""
        distinct = list(dict.fromkeys(targets))
        if not distinct:
            raise ValueError("require_all() needs at least one target")
        with self.deadline():
            return raise_for_decision(strictest([self.check(t, action, contents, parameters) for t in distinct]))

    def approval(self, approval_id: str) -> dict[str, Any]:
        """The approval request ``approval_id`` (its ``status``: pending, approved, denied, expired, spent)."""
        path = f"/v1/approvals/{_path_segment(approval_id)}"
        return _object(self._request("GET", path), "approval", self.url)

    def request_approval(self, target: str, action: str, parameters: Mapping[str, Any] | None = None,
                         reason: str = "") -> dict[str, Any]:
        """Ask for approval of ``action`` on ``target`` with ``parameters`` before trying it (a
        ``require_approval`` check creates the same request by itself): the pending request, new or reused."""
        body: dict[str, Any] = {"target": target, "action": action, "reason": reason}
        if parameters is not None:
            body["parameters"] = dict(parameters)
        return _object(self._request("POST", "/v1/approvals", json=body), "approval", self.url)

    def wait_for_approval(self, approval_id: str, timeout: float) -> dict[str, Any]:
        """Poll the request until a person decides it or it expires, at most ``timeout`` seconds; the last
        record (``status`` still ``pending`` when the time ran out).

        A deadline of its own: each poll is one call with the client's usual deadline, and any deadline
        running around this call (a guard's check) is set aside, since waiting for a person is not a check.
        Polls back off from 0.25 s, doubling, to 5 s."""
        token = _DEADLINE.set(None)
        try:
            give_up = time.monotonic() + max(0.0, timeout)
            delay = POLL_FIRST
            while True:
                record = self.approval(approval_id)
                left = give_up - time.monotonic()
                if record.get("status") in SETTLED or left <= 0:
                    return record
                time.sleep(min(delay, left))
                delay = min(delay * 2, POLL_LAST)
        finally:
            _DEADLINE.reset(token)

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
        with self.deadline():
            left = _time_left()
            try:
                if left is None or left <= 0:
                    raise httpx.ReadTimeout("the envlabel deadline has passed")
                # a transport of the caller's own is held to the time left at least between requests
                response = self._http.request(method, path, timeout=min(left, self.timeout), **kwargs)
            except httpx.TimeoutException as exc:
                raise UnreachableError(
                    f"envlabel at {self.url} did not answer {method} {path} within the {self.timeout:g} s "
                    f"deadline ({type(exc).__name__}); the call was not made. Check that `envlabel serve` is "
                    "healthy and ENVLABEL_URL points at it, or raise ENVLABEL_TIMEOUT") from exc
            except httpx.TransportError as exc:  # refused, reset, DNS
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


def _object(body: Any, what: str, url: str) -> dict[str, Any]:
    """``body`` if it is a JSON object, else a ServiceError: a list or a string is no label or check."""
    if not isinstance(body, dict):
        raise ServiceError(f"envlabel at {url} answered with {type(body).__name__} JSON where {what} JSON (an "
                           "object) was expected; is ENVLABEL_URL pointing at envlabel?", 200)
    return body


def _path_segment(value: str) -> str:
    """``value`` as one URL path segment: an id with a ``/`` or ``?`` in it cannot reach another route."""
    return quote(value, safe="")


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
