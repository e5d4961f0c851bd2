"""Enforcement generated from the labels: ``envlabel export KIND --out DIR [--check]``.

Each exporter is a module of this package with ``export(query, options) -> list[Artifact]``; it reads the
current labels through :class:`~envlabel.service.core.query.Query` and returns the files to write, each
relative to the output directory and under the exporter's own folder (``aws-scp/ou-abc.json``). This
module owns what every kind shares: the options, the ``KIND/manifest.json`` that names which targets each
file attaches to, writing a kind's folder atomically, and comparing a folder on disk with the labels (the
CI drift gate).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envlabel.errors import ConfigError
from envlabel.service.core.errors import InvalidRequest

if TYPE_CHECKING:
    from envlabel.config import Config
    from envlabel.service.core.query import Query

log = logging.getLogger("envlabel.export")

#: the file in each kind's folder that lists every artifact and the target ids it attaches to
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """One generated file: ``path`` relative to the output directory (``aws-scp/ou-abc.json``)."""

    path: str
    content: str
    #: the target ids (OU, account, folder, project, namespace...) the artifact is attached to
    attaches_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportOptions:
    """What every exporter reads; built from the config's ``export`` section by :func:`options_from_config`."""

    #: the environments whose targets get enforcement (most restrictive first)
    environments: tuple[str, ...] = ("production",)
    #: deny the modify class too, not only delete
    include_modify: bool = False
    #: AWS principal ARNs (wildcards allowed, as in ``ArnNotLike``) that the generated SCPs never deny
    break_glass: tuple[str, ...] = ()
    #: the AWS role ARN alone allowed to change the environment tag keys (None: nobody is)
    labeler_role: str | None = None
    #: the tag keys that carry an environment (the config's ``tag_keys``)
    tag_keys: tuple[str, ...] = ("environment",)
    #: each environment's canonical value first, then its synonyms (the config's ``synonyms``)
    synonyms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: GCP principals (``principal://...``, ``principalSet://...``) exempt from the generated deny policies
    gcp_exception_principals: tuple[str, ...] = ()
    #: Kubernetes users/groups exempt from the generated admission policies (``system:masters`` ...)
    k8s_exempt_groups: tuple[str, ...] = ()
    #: AWS resource types the tag policy enforces on (``enforced_for``; empty: report-only)
    enforced_for: tuple[str, ...] = ()
    #: extra exporter-specific settings, as the config gave them
    extra: tuple[tuple[str, str], ...] = field(default=())


Exporter = Callable[["Query", ExportOptions], list[Artifact]]

#: kind -> module of this package that defines ``export`` (imported on first use)
KINDS: dict[str, str] = {
    "aws-scp": "aws_scp",
    "aws-tag-policy": "aws_tag_policy",
    "gcp-deny": "gcp_deny",
    "k8s-vap": "k8s_vap",
}


class _Exporters(dict[str, Exporter]):
    """``EXPORTERS[kind]``: the exporter function, its module imported lazily."""

    def __missing__(self, kind: str) -> Exporter:
        if kind not in KINDS:
            raise InvalidRequest("kind", f"{kind!r} is not an export kind; use one of {', '.join(KINDS)}")
        module = importlib.import_module(f"{__name__}.{KINDS[kind]}")
        exporter: Exporter = module.export
        self[kind] = exporter
        return exporter


EXPORTERS: dict[str, Exporter] = _Exporters()


def options_from_config(config: Config) -> ExportOptions:
    """The export options of a config: its ``export`` section plus the tag keys and synonyms it labels by."""
    section = config.export
    unknown = [env for env in section.environments if env not in config.environments]
    if unknown:
        raise ConfigError([("export.environments", f"{', '.join(unknown)} is not one of the configured "
                            f"environments ({', '.join(config.environments)}); fix export.environments")])
    synonyms = tuple((env, tuple(config.synonyms.get(env, [env]))) for env in config.environments)
    base = ExportOptions(tag_keys=tuple(config.tag_keys), synonyms=synonyms)
    return ExportOptions(
        environments=tuple(section.environments),
        include_modify=section.include_modify,
        break_glass=tuple(section.break_glass),
        labeler_role=section.labeler_role,
        tag_keys=base.tag_keys,
        synonyms=synonyms,
        gcp_exception_principals=tuple(section.gcp_exception_principals),
        k8s_exempt_groups=tuple(section.k8s_exempt_groups),
        enforced_for=tuple(section.enforced_for),
    )


def export_kind(query: Query, kind: str, options: ExportOptions) -> list[Artifact]:
    """Every file of ``kind``, its ``manifest.json`` last; raises InvalidRequest for an unknown kind."""
    artifacts = sorted(EXPORTERS[kind](query, options), key=lambda a: a.path)
    for artifact in artifacts:
        _check_path(kind, artifact.path)
    manifest = {"kind": kind, "files": [{"path": a.path.split("/", 1)[1], "attaches_to": list(a.attaches_to)}
                                        for a in artifacts]}
    return [*artifacts, Artifact(f"{kind}/{MANIFEST}", dump_json(manifest))]


def dump_json(value: object) -> str:
    """The one JSON layout of every generated file, so a re-export of unchanged labels is byte-identical."""
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _check_path(kind: str, path: str) -> None:
    # an exporter's file stays inside its own folder: writing and --check replace that folder whole
    parts = path.split("/")
    if len(parts) < 2 or parts[0] != kind or any(p in ("", ".", "..") for p in parts) or parts[-1] == MANIFEST:
        raise ValueError(f"exporter {kind} produced the path {path!r}; it must be {kind}/NAME")


def write_kind(directory: Path, kind: str, artifacts: Sequence[Artifact]) -> None:
    """Replace ``directory/kind`` with exactly ``artifacts``: built beside it, then swapped in by rename,
    so a reader sees the old set or the new one (never half of each) and no stale file survives."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}.new-", dir=directory))
    try:
        for artifact in artifacts:
            target = staging / artifact.path.split("/", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(artifact.content, encoding="utf-8")
        staging.chmod(0o755)
        final = directory / kind
        if final.exists() or final.is_symlink():
            retired = Path(tempfile.mkdtemp(prefix=f".{kind}.old-", dir=directory))
            os.replace(final, retired / kind)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def compare_kind(directory: Path, kind: str, artifacts: Iterable[Artifact]) -> list[str]:
    """What differs between ``directory/kind`` on disk and ``artifacts``: one line per file, ``changed:``,
    ``missing:`` or ``extra:`` and its path; empty when the folder matches the labels exactly."""
    wanted = {a.path: a.content for a in artifacts}
    folder = directory / kind
    present = {f"{kind}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()} \
        if folder.is_dir() else set()
    problems = []
    for path in sorted(wanted.keys() | present):
        if path not in present:
            problems.append(f"missing: {path}")
        elif path not in wanted:
            problems.append(f"extra: {path}")
        elif _read(directory / path) != wanted[path]:
            problems.append(f"changed: {path}")
    return problems


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # unreadable counts as changed


def export_directory(query: Query, directory: Path, kinds: Sequence[str], options: ExportOptions) -> None:
    """Write every kind's folder under ``directory`` from the current labels (the daemon's opt-in export)."""
    for kind in kinds:
        write_kind(directory, kind, export_kind(query, kind, options))


def export_configured(query: Query) -> list[str]:
    """The daemon's opt-in: rewrite ``export.directory`` with every kind of ``export.kinds`` from the current
    labels; returns the kinds written (none when no directory is configured). A kind that fails is logged
    and its folder left as it was; the others are still written."""
    section = query.config.export
    if section.directory is None:
        return []
    options = options_from_config(query.config)
    written: list[str] = []
    for kind in section.kinds:
        try:
            write_kind(Path(section.directory), kind, export_kind(query, kind, options))
        except Exception:  # one broken exporter must not stop the others, nor the daemon
            log.exception("export %s to %s failed; the previous files stand", kind, section.directory)
            continue
        written.append(kind)
    return written
