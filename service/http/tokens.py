"""Bearer tokens with roles, stored as SHA-256 hashes (``api.tokens``); who must present one; and what a
server without tokens accepts.

Tokens are required whenever any are configured, and always when the server listens beyond
loopback: a non-loopback server with no tokens refuses to start. A loopback-only server with
no tokens is the single-user setup (a laptop, a sidecar) and every caller acts as admin, so it
must be loopback in every sense: a request must also be *addressed* to this machine (its ``Host``
is a loopback name or address, see :func:`is_loopback_host`), or a web page the operator visits
could reach it through DNS rebinding; and a state-changing request sent by a web page of another
origin (:func:`is_loopback_origin`) is refused.

A presented token is compared only when it could be one: an empty token, or one shorter than
:data:`MIN_TOKEN_LENGTH` characters, is refused as such (no configured token can be that short
and still be unguessable). ``envlabel token create`` prints a new token and its config entry; by
hand (``${TOKEN:?}`` stops the recipe when ``TOKEN`` is unset or empty, instead of hashing the empty
string, whose SHA-256 the config refuses)::

    TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')   # 43 characters
    printf %s "${TOKEN:?}" | sha256sum    # -> api.tokens: [{name: ci, role: reader, sha256: <hex>}]
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envlabel.config import ApiToken
from envlabel.errors import EnvlabelError

READER, ADMIN = "reader", "admin"
#: the shortest bearer token compared at all: ``secrets.token_urlsafe(32)`` is 43 characters
MIN_TOKEN_LENGTH = 20
_BEARER = b"bearer "
_WHITESPACE = b" \t"
#: methods that carry a body, and so may change state: the ones a cross-origin page must not send
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname may resolve anywhere


def is_loopback_host(authority: str) -> bool:
    """True when a ``Host`` header names this machine: ``localhost``, an address of 127.0.0.0/8 or ``[::1]``,
    each with or without ``:port``. Any other name may be an attacker's domain rebound to 127.0.0.1."""
    host, port = authority, ""
    if authority.startswith("["):  # an IPv6 literal is bracketed in a Host header
        host, bracket, port = authority[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
        port = port[1:]
        try:
            loopback = ipaddress.IPv6Address(host).is_loopback
        except ValueError:
            return False
    else:
        if ":" in authority:
            host, _, port = authority.partition(":")
        try:
            loopback = host.lower() == "localhost" or ipaddress.IPv4Address(host).is_loopback
        except ValueError:
            return False
    if not port:
        return loopback and not authority.endswith(":")
    return loopback and port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535


def is_loopback_origin(origin: str) -> bool:
    """True when an ``Origin`` header is a page served from this machine (``http://localhost:3000``); False for
    any other origin, including ``null`` (a sandboxed frame, a file, a redirect)."""
    scheme, sep, authority = origin.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and "/" not in authority \
        and is_loopback_host(authority)


def loopback_refusal(headers: Iterable[tuple[bytes, bytes]], method: str) -> tuple[int, str, str] | None:
    """Why a server without tokens refuses a request, as (status, error, message): 421 when it is not addressed
    to this machine, 403 for a cross-origin write; None to serve it. With no token to steal, DNS rebinding is
    how a web page would reach a loopback server, and the browser then sends the attacker's name as ``Host``
    (and the page's ``Origin``)."""
    hosts: list[str] = []
    origins: list[str] = []
    for key, value in headers:
        if key == b"host":
            hosts.append(value.decode("latin-1"))
        elif key == b"origin":
            origins.append(value.decode("latin-1"))
    if len(hosts) != 1 or not is_loopback_host(hosts[0]):
        named = "no Host header" if not hosts else "several Host headers" if len(hosts) > 1 else \
            f"Host {hosts[0][:100]!r} is not this machine"
        return 421, "misdirected request", (
            f"{named}: with no api.tokens configured this server answers only requests addressed to 127.0.0.1, "
            "[::1] or localhost (any port), so that a web page cannot reach it through DNS rebinding. Connect to "
            "http://127.0.0.1:PORT, or configure api.tokens to serve other names")
    if method in BODY_METHODS:
        for origin in origins:
            if not is_loopback_origin(origin):
                return 403, "cross-origin request", (
                    f"Origin {origin[:100]!r} is not this machine: with no api.tokens configured, a {method} sent "
                    "by a web page of another origin is refused. Send it from a local program (which sends no "
                    "Origin) or a page served from localhost, or configure api.tokens")
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRefused(Exception):
    """A request's ``Authorization`` holds no configured token; the message says what to send instead."""


@dataclass(frozen=True, slots=True)
class Tokens:
    tokens: tuple[ApiToken, ...]
    required: bool

    @classmethod
    def for_host(cls, tokens: Sequence[ApiToken], host: str) -> Tokens:
        """The token policy for a server listening on ``host``; refuses an open non-loopback server."""
        if not tokens and not is_loopback(host):
            raise EnvlabelError(
                f"refusing to serve on {host} without tokens: anyone who can reach it could set overrides. "
                "Add api.tokens to the config (each {name, role: reader|admin, sha256: <hex sha256 of the "
                "token>}), or listen on 127.0.0.1")
        return cls(tuple(tokens), required=bool(tokens))

    def match(self, authorization: bytes | None) -> ApiToken:
        """The configured token presented as ``Authorization: Bearer TOKEN``; raises :class:`TokenRefused`
        saying what was wrong (none sent, empty, too short, or not configured)."""
        value = (authorization or b"").strip(_WHITESPACE)  # the server may already have trimmed "Bearer " to "Bearer"
        if value[:7].lower() != _BEARER and value.lower() != _BEARER.strip():
            raise TokenRefused("send Authorization: Bearer TOKEN with a token whose sha256 is listed in the "
                               "server's api.tokens")
        presented = value[7:].strip(_WHITESPACE)
        if not presented:
            raise TokenRefused("the bearer token is empty (is the variable holding it unset?); send "
                               "Authorization: Bearer TOKEN with a token whose sha256 is listed in api.tokens")
        if len(presented) < MIN_TOKEN_LENGTH:
            # never compared: no token this short is safe to configure, so none is accepted
            raise TokenRefused(f"the bearer token is too short ({len(presented)} characters; at least "
                               f"{MIN_TOKEN_LENGTH}); send the whole token, and create tokens with "
                               "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
        digest = hashlib.sha256(presented).hexdigest()
        found = None
        for token in self.tokens:  # compare against every entry so timing says nothing about which matched
            if hmac.compare_digest(digest, token.sha256):
                found = token
        if found is None:
            raise TokenRefused("this bearer token is not configured: send a token whose sha256 is listed in the "
                               "server's api.tokens")
        return found
