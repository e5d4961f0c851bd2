"""Bearer tokens with roles, stored as SHA-256 hashes (``api.tokens``); and who must present one.

Tokens are required whenever any are configured, and always when the server listens beyond
loopback: a non-loopback server with no tokens refuses to start. A loopback-only server with
no tokens is the single-user setup (a laptop, a sidecar) and every caller acts as admin.

Create a token and its config entry::

    TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
    printf %s "$TOKEN" | sha256sum    # -> api.tokens: [{name: ci, role: reader, sha256: <hex>}]
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from envlabel.config import ApiToken
from envlabel.errors import EnvlabelError

READER, ADMIN = "reader", "admin"
_BEARER = b"bearer "


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname may resolve anywhere


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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

    def match(self, authorization: bytes | None) -> ApiToken | None:
        """The configured token presented as ``Authorization: Bearer TOKEN``, else None."""
        if authorization is None or authorization[:7].lower() != _BEARER:
            return None
        presented = hashlib.sha256(authorization[7:].strip()).hexdigest()
        found = None
        for token in self.tokens:  # compare against every entry so timing says nothing about which matched
            if hmac.compare_digest(presented, token.sha256):
                found = token
        return found
