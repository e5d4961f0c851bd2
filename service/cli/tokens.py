"""``envlabel token create``: a fresh API token and the ``api.tokens`` entry that admits it.

The token is printed once and never stored; the config keeps only its SHA-256. Generating it here means
nobody hashes a shell variable that happens to be unset (the SHA-256 of the empty string, which the config
refuses).
"""

from __future__ import annotations

import hashlib
import secrets

import click
import yaml

from envlabel.service.cli.kit import EXIT_USAGE, config_option, emit_json, fail

#: bytes of randomness in a token (secrets.token_urlsafe: 43 characters, far above the server's minimum length)
TOKEN_BYTES = 32


def create_token(name: str, role: str) -> dict[str, str]:
    """A new random token for ``name`` with ``role``, its SHA-256 and nothing stored anywhere."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return {"name": name, "role": role, "token": token, "sha256": hashlib.sha256(token.encode()).hexdigest()}


@click.group()
def token() -> None:
    """Create API tokens (the config keeps only their SHA-256)."""


@token.command(name="create")
@click.option("--name", required=True, help="Who or what uses the token (shown as the author of its overrides).")
@click.option("--role", type=click.Choice(["reader", "admin"]), required=True,
              help="reader: labels, checks and listings; admin: also sets and removes overrides.")
@click.option("--json", "as_json", is_flag=True, help='{"name", "role", "token", "sha256"}')
@config_option
def create_command(name: str, role: str, as_json: bool) -> None:
    """Print a new random token and the api.tokens entry to add to the config."""
    if not name.strip() or not name.isprintable():
        fail("--name needs visible characters, such as ci-deploy or alice", EXIT_USAGE)
    created = create_token(name.strip(), role)
    if as_json:
        emit_json(created)
        return
    entry = yaml.safe_dump([{k: created[k] for k in ("name", "role", "sha256")}], sort_keys=False).rstrip()
    click.echo(f"token (shown only now; give it to {created['name']} as ENVLABEL_TOKEN and keep it secret):\n"
               f"  {created['token']}\n\n"
               "add this entry under api: tokens: in the config (it holds the token's SHA-256, not the token):\n"
               + "\n".join(f"  {line}" for line in entry.splitlines()))


ALL = [token]
