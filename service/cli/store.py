"""``envlabel store init`` and ``envlabel store check``: create a store explicitly, check every page of one.

Every other command opens the configured store and refuses one that is empty, truncated, corrupt or not
envlabel's (exit 1, saying what was found); only where no file exists does it create one. These two are
for the cases in between: ``init`` makes a new store where there is none or only an empty file (it never
overwrites data), and ``check`` reads all of an existing store, which opening does not (it reads the schema
and the first row of every table).
"""

from __future__ import annotations

import time

import click

from envlabel.config import redact_url
from envlabel.service.cli.kit import config_option, get_config, open_configured_store
from envlabel.store.failures import corrupt


@click.group()
def store() -> None:
    """Create or check the configured store (config `store`)."""


@store.command()
@config_option
def init() -> None:
    """Make the configured store: a new file where none is, or in place of an empty (0-byte) one. An
    existing envlabel store is left as it is; any other file is refused, never overwritten."""
    from envlabel.store import init_store

    config = get_config()
    click.echo(init_store(config.store, pool_size=config.store_pool_size))


@store.command()
@config_option
def check() -> None:
    """Read every page of the configured store (SQLite's integrity check; PostgreSQL: every row): 0 when it
    is intact, 1 naming what is damaged. Takes minutes on a store of millions of resources."""
    started = time.monotonic()
    opened = open_configured_store()  # a store refused at opening exits 1 here, saying why
    problems = opened.verify()
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise corrupt(opened.dialect.where, shown)
    click.echo(f"{redact_url(get_config().store)}: intact (schema version {opened.schema_version}, every page "
               f"read in {time.monotonic() - started:.1f} s)")


ALL = [store]
