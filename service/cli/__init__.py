"""The ``envlabel`` command. Exit codes: 0 ok, 1 error, 2 usage error; ``get`` 3 when never seen;
``check`` 4 require approval, 5 deny. Each command lives in a module named for what it owns."""

from __future__ import annotations

import click

from envlabel.config import redact_url
from envlabel.service.cli import (
    agents,
    approvals,
    audit,
    commands,
    decisions,
    demo,
    export,
    history,
    labels,
    overrides,
    plans,
    store,
    tokens,
)
from envlabel.service.cli.kit import config_option, get_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(readable=False), default=None,
              help="Config file (default: $ENVLABEL_CONFIG, else ./envlabel.yaml).")
@click.version_option(package_name="envlabel")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """envlabel: the authoritative environment (production / staging / sandbox) of every resource."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command()
@config_option
def validate() -> None:
    """Check the configuration as `serve` would at start; print every problem with its field path.

    Besides the file and the ENVLABEL_* variables: each webhook's secret_env variable must be set here."""
    from envlabel.service.daemon.webhooks import endpoints_from_config

    config = get_config()  # a ConfigError exits 2 (usage) with every problem, through config_option
    endpoints_from_config(config.webhooks)  # what serve refuses at start: a webhook secret variable unset
    click.echo(f"configuration ok: {len(config.sources)} source(s), environments "
               f"{', '.join(config.environments)}, store {redact_url(config.store)}")


# a new command group: one module here
for _module in (labels, overrides, history, audit, agents, decisions, approvals, commands, plans, demo, tokens, store,
                export):
    for _command in _module.ALL:
        main.add_command(_command)
