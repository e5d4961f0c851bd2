"""Who calls the HTTP API: the :class:`Caller` the front door establishes per request, and where routes find it.

The front door (:class:`envlabel.service.http.gate.Gate`) builds one caller per request and puts it in the ASGI
scope under :data:`CALLER`, with the token's role under :data:`ROLE`; routes (and the MCP tools served at
``/mcp``, which see the same scope) read them with :func:`caller_of` and :func:`is_admin`.

- With ``api.tokens`` the token's principal (``principal``, default its name) and ``groups`` are authoritative;
  an ``X-Envlabel-Principal`` that differs is a claim: recorded, and its grant applied too (it can only narrow).
- Without tokens (the loopback single-user server) nothing authenticates: the claim is the principal, else
  ``anonymous``, and every caller acts as admin.
- ``X-Envlabel-Mode: audit`` (the caller's ENVLABEL_MODE) asks for shadow mode: decided and logged, not
  enforced. ``enforce`` is accepted too (it cannot turn a server configured ``mode: audit`` back to enforce);
  any other value is refused with a 400 naming the allowed ones.
- ``X-Envlabel-Interface`` says which face sent the check (guard, hook, mcp, check-command); it is only what the
  decision log records, so an unknown value is recorded as ``http``.
"""

from __future__ import annotations

from typing import Any, cast

from starlette.types import Scope

from envlabel.config import ApiToken
from envlabel.records import Interface, Mode
from envlabel.service.core.authority import Caller
from envlabel.service.http.asgi import error_body, header
from envlabel.service.http.tokens import ADMIN

#: scope keys the front door sets for every request it lets through to a route
CALLER, ROLE = "envlabel.caller", "envlabel.role"
PRINCIPAL_HEADER, MODE_HEADER, INTERFACE_HEADER = b"x-envlabel-principal", b"x-envlabel-mode", b"x-envlabel-interface"
MODES: tuple[Mode, ...] = ("enforce", "audit")
#: what a client may say it is (X-Envlabel-Interface); anything else is recorded as http
CLIENT_INTERFACES: frozenset[str] = frozenset({"guard", "hook", "mcp", "check-command"})
#: the longest principal claim read from a header (config names are far shorter)
MAX_CLAIM = 200


class BadCallerHeader(ValueError):
    """An ``X-Envlabel-*`` header the front door cannot accept; ``answer`` is the 400 to send."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.answer: tuple[int, dict[str, Any]] = (400, error_body("invalid header", message))


def caller_for(scope: Scope, token: ApiToken | None) -> Caller:
    """The caller of a request: ``token``'s principal and groups (None: no tokens configured), the claim, the
    mode and the interface from its headers. Raises :class:`BadCallerHeader`."""
    interface = _text(scope, INTERFACE_HEADER).lower()
    caller = Caller(interface=cast(Interface, interface) if interface in CLIENT_INTERFACES else "http",
                    mode=mode_of(_text(scope, MODE_HEADER)))
    if token is not None:
        caller = Caller(principal=token.principal_name, groups=tuple(token.groups), interface=caller.interface,
                        mode=caller.mode)
    claim = _text(scope, PRINCIPAL_HEADER)
    if len(claim) > MAX_CLAIM or not claim.isprintable():
        raise BadCallerHeader(f"X-Envlabel-Principal is not a principal name (at most {MAX_CLAIM} printable "
                              "characters): set ENVLABEL_PRINCIPAL to a name such as ci-deployer")
    return caller.claiming(claim)


def mode_of(value: str) -> Mode | None:
    """The mode an ``X-Envlabel-Mode`` value asks for (None: not sent); raises :class:`BadCallerHeader`."""
    if not value:
        return None
    lowered = value.lower()
    if lowered not in MODES:
        raise BadCallerHeader(f"X-Envlabel-Mode {value[:40]!r} is not one of {', '.join(MODES)}: set "
                              "ENVLABEL_MODE=audit for shadow mode (nothing blocked, everything logged), or unset it")
    return "audit" if lowered == "audit" else "enforce"


def caller_of(scope: Scope) -> Caller:
    """The caller the front door established (a bare anonymous HTTP caller if none did, as in a unit test)."""
    caller = scope.get(CALLER)
    return caller if isinstance(caller, Caller) else Caller(interface="http")


def is_admin(scope: Scope) -> bool:
    """True for an admin token, and for every caller of a server without tokens (loopback, single user)."""
    return scope.get(ROLE) == ADMIN


def tokens_required(scope: Scope) -> bool:
    """True when the server has tokens, so the caller's principal is authenticated (not merely claimed)."""
    return bool(scope.get("envlabel.token"))


def _text(scope: Scope, name: bytes) -> str:
    return (header(scope, name) or b"").decode("latin-1").strip()
