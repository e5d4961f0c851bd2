"""Shared pieces of the CLI commands: --config handling, errors, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from envlabel.config import Config, load_config
from envlabel.errors import EnvlabelError
from envlabel.service.core import clock
from envlabel.service.core.errors import EXIT_ERROR, EXIT_USAGE, InvalidRequest, outcome_of
from envlabel.store.sql import Store

F = TypeVar("F", bound=Callable[..., Any])

EXIT_NOT_FOUND = 3
__all__ = ["EXIT_ERROR", "EXIT_NOT_FOUND", "EXIT_USAGE", "config_option", "emit_json", "fail", "get_config",
           "open_configured_store", "parse_time"]


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"envlabel: {message}", err=True)
    sys.exit(code)


def config_option(func: F) -> F:
    """``--config F`` on every command (it may also be given before the command); errors become exits."""

    @wraps(func)
    def wrapper(*args: Any, config_path: str | None = None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if config_path:
            ctx.obj["config_path"] = config_path
        try:
            return func(*args, **kwargs)
        except EnvlabelError as exc:  # the exit code comes from the one table of errors
            fail(str(exc), outcome_of(exc).exit_code)

    # any path: the loader says in one line what is wrong with it (missing, unreadable, a directory, binary...)
    option = click.option("--config", "config_path", type=click.Path(readable=False), default=None,
                          help="Config file (default: $ENVLABEL_CONFIG, else ./envlabel.yaml).")
    return option(wrapper)  # type: ignore[return-value]


def get_config() -> Config:
    """The configuration, loaded once per command; a ConfigError becomes exit 2 through :func:`config_option`."""
    ctx = click.get_current_context()
    cached = ctx.obj.get("config")
    if cached is None:
        cached = load_config(ctx.obj.get("config_path"))
        ctx.obj["config"] = cached
    config: Config = cached
    return config


def open_configured_store() -> Store:
    from envlabel.store import open_store

    ctx = click.get_current_context()
    store: Store | None = ctx.obj.get("store")
    if store is None:
        config = get_config()
        store = open_store(config.store, pool_size=config.store_pool_size)
        ctx.obj["store"] = store
        ctx.call_on_close(store.close)
    return store


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def parse_time(value: str) -> datetime:
    """``--at`` and friends: an ISO time, or a usage error that says how to write one."""
    try:
        return clock.parse_time(value)
    except clock.TimeOutOfRange as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1]) from None
    except InvalidRequest:
        raise click.BadParameter(f"{value!r} is not a time; write it as 2026-01-31T12:00:00Z") from None
