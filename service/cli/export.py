"""``envlabel export KIND... --out DIR [--check]``: the CLI of :mod:`envlabel.service.core.export`."""

from __future__ import annotations

from pathlib import Path

import click

from envlabel.service.cli.kit import EXIT_ERROR, EXIT_USAGE, config_option, fail, get_config, open_configured_store
from envlabel.service.core.export import KINDS, compare_kind, export_kind, options_from_config, write_kind
from envlabel.service.core.query import Query


@click.command("export")
@click.argument("kinds", nargs=-1, required=True, type=click.Choice([*KINDS, "all"]))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write (each kind in its own folder, with a manifest.json).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 listing every file that no longer matches the labels (a CI drift gate).")
@config_option
def export(kinds: tuple[str, ...], out: Path, check: bool) -> None:
    """Enforcement generated from the current labels: aws-scp, aws-tag-policy, gcp-deny, k8s-vap (docs/export.md).

    Each KIND's folder under --out is replaced whole, so a file of a target no longer protected disappears."""
    query = Query(get_config(), open_configured_store())
    options = options_from_config(query.config)
    chosen = list(KINDS) if "all" in kinds else list(dict.fromkeys(kinds))
    drift: list[str] = []
    for kind in chosen:
        try:
            artifacts = export_kind(query, kind, options)
        except ValueError as exc:  # a setting the generated policy cannot carry
            fail(f"{kind}: {exc}", EXIT_USAGE)
        if check:
            drift += compare_kind(out, kind, artifacts)
            continue
        write_kind(out, kind, artifacts)
        click.echo(f"{kind}: {len(artifacts) - 1} file(s) and {kind}/manifest.json written to {out}")
    if check:
        for line in drift:
            click.echo(line)
        if drift:
            fail(f"{len(drift)} file(s) in {out} no longer match the labels: run `envlabel export "
                 f"{' '.join(chosen)} --out {out}` and review the change", EXIT_ERROR)
        click.echo(f"{out} matches the labels ({', '.join(chosen)})")


ALL = [export]
