"""Shell-command benchmark: ``check-command`` latency over a mix of command lines, and the coding-agent hook's
end-to-end time for commands that touch no infrastructure.

    .venv/bin/python bench/commands.py                  # 10,000 lines, 50 hook runs
    .venv/bin/python bench/commands.py --lines 2000 --hook-runs 20

1. parse + decide: :func:`envlabel.service.core.commands.check_command` (the shell split, the tool's reader, and
   the check of every operation against a SQLite store: what ``envlabel check-command`` does in process) for each
   of ``--lines`` command lines, a mix of aws, kubectl, helm, gcloud, curl against the cluster's API server, and
   unrelated commands (git, make, pytest, pipes). p50 / p99 per tool and overall, and parse alone (the plan).
   The store holds a synthetic AWS estate (``_util.Estate``) and the fake Kubernetes cluster's namespaces and
   deployments as its scanner records them; AWS profiles name their account by ``role_arn`` (no STS call).
2. the hook: ``envlabel hook claude-code`` spawned as Claude Code spawns it (the PreToolUse JSON on stdin),
   spawn to exit, for unrelated commands; and for a kubectl delete checked over HTTP by a served envlabel.
   Byte-code is written and warm (``PYTHONDONTWRITEBYTECODE`` unset), as in an installed envlabel. The
   interpreter's own start (``python -c pass``) is measured beside it. Target: under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _util import Estate, machine, percentiles, table, workdir

from envlabel.commands import CommandContext, plan_command
from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.commands import check_command, local_context
from envlabel.service.core.pipeline import commit_changes, run_source
from envlabel.service.core.query import Query
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.demo.fakes.kubernetes_api import start_fake_cluster, write_kubeconfig
from envlabel.store import open_store

ENVLABEL = str(Path(sys.executable).parent / "envlabel")
NAMESPACES = {"payments": "production", "orders": "production", "payments-stg": "staging", "scratch": "sandbox"}
UNRELATED = ("git status", "git diff --stat | tail -3", "make test", "python3 -m pytest -q tests/test_x.py",
             "ls -la src && cat README.md | head", "grep -rn TODO src/ || true", "npm run build",
             "cd web && yarn lint", "docker compose up -d db", "echo $PATH | tr : '\\n'",
             "find . -name '*.py' | xargs wc -l", "cargo build --release 2>&1 | tail -5")


def build(directory: Path) -> tuple[Query, dict[str, str], list[tuple[str, str]], dict[str, int], Any]:
    """The store, the environment the commands run with, the AWS resources and accounts (id -> profile
    number) to name, and the fake cluster with its config and store."""
    url, fake = start_fake_cluster()
    for namespace, environment in NAMESPACES.items():
        fake.seed("namespaces", namespace, labels={"environment": environment})
        for app in ("api", "worker", "web"):
            fake.seed("deployments", app, namespace)
    kubeconfig = write_kubeconfig(directory / "kubeconfig", url, context="prod-eu")
    config = config_from_dict({"store": f"sqlite:///{directory / 'envlabel.db'}", "sources": [
        {"name": "k8s", "type": "kubernetes", "kubeconfig": str(kubeconfig), "cluster": "prod-eu", "watch": False}]})
    store = open_store(config.store)
    assert run_source(config, store, config.sources[0]).complete
    estate = Estate(accounts=12, per_account=60)
    resources = list(estate.resources())
    commit_changes(store, Taxonomy.from_config(config), "bench", resources)
    profiles = [f"[profile a{i}]\nrole_arn = arn:aws:iam::{estate.account_id(i)}:role/agent\n"
                f"credential_source = Environment\nregion = us-east-1\n" for i in range(estate.accounts)]
    (directory / "aws-config").write_text("\n".join(profiles))
    environ = {"HOME": str(directory), "KUBECONFIG": str(kubeconfig), "AWS_CONFIG_FILE": str(directory / "aws-config"),
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PATH": "/usr/bin:/bin"}
    arns = [(r.id, r.kind) for r in resources if r.kind in ("rds:db", "ec2:instance", "dynamodb:table", "s3:bucket")]
    accounts = {estate.account_id(i): i for i in range(estate.accounts)}
    return Query(config, store), environ, arns, accounts, (fake, url, config, store)


def lines(count: int, arns: list[tuple[str, str]], accounts: dict[str, int], api: str) -> list[tuple[str, str]]:
    """``count`` (tool, command line) pairs: 30% unrelated, 25% aws, 20% kubectl, 10% helm, 8% gcloud, 7% curl."""
    rng = random.Random(13)
    out: list[tuple[str, str]] = []
    for _ in range(count):
        roll = rng.random()
        ns = rng.choice(list(NAMESPACES))
        app = rng.choice(("api", "worker", "web", "never-seen"))
        if roll < 0.30:
            out.append(("unrelated", rng.choice(UNRELATED)))
        elif roll < 0.55:
            arn, kind = rng.choice(arns)
            account = arn.split(":")[4] if kind != "s3:bucket" else rng.choice(list(accounts))
            profile = f"a{accounts.get(account, 0)}"
            region = arn.split(":")[3] or "us-east-1"
            name = arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            command = {
                "rds:db": f"aws rds delete-db-instance --db-instance-identifier {name} --skip-final-snapshot",
                "ec2:instance": f"aws ec2 terminate-instances --instance-ids {name}",
                "dynamodb:table": f"aws dynamodb delete-table --table-name {name}",
                "s3:bucket": f"aws s3 rm s3://{name}/logs --recursive",
            }[kind]
            if rng.random() < 0.3:
                command = "aws rds describe-db-instances"
            out.append(("aws", f"{command} --region {region} --profile {profile}"))
        elif roll < 0.75:
            verb = rng.choice(("delete deployment {app} -n {ns}", "scale deployment {app} --replicas=0 -n {ns}",
                               "get pods -n {ns}", "rollout restart deployment/{app} -n {ns}",
                               "delete ns {ns}", "apply -f - <<'EOF'\napiVersion: apps/v1\nkind: Deployment\n"
                               "metadata: {{name: {app}, namespace: {ns}}}\nEOF"))
            out.append(("kubectl", "kubectl " + verb.format(app=app, ns=ns)))
        elif roll < 0.85:
            verb = rng.choice(("uninstall {app} -n {ns}", "rollback {app} 1 -n {ns}", "list -n {ns}"))
            out.append(("helm", "helm " + verb.format(app=app, ns=ns)))
        elif roll < 0.93:
            project = rng.choice(("orders-prod", "orders-stg", "scratch-123"))
            verb = rng.choice(("projects delete {p} --quiet", "projects describe {p}",
                               "compute instances delete vm-1 --zone us-central1-a --project {p}"))
            out.append(("gcloud", "gcloud " + verb.format(p=project)))
        else:
            method = rng.choice(("DELETE", "GET", "PATCH"))
            out.append(("curl", f"curl -s -X {method} -H 'Authorization: Bearer t' "
                                f"{api}/apis/apps/v1/namespaces/{ns}/deployments/{app}"))
    return out


def measure_lines(query: Query, environ: dict[str, str], mix: list[tuple[str, str]],
                  api: str) -> dict[str, dict[str, float]]:
    context = local_context(query.config, environ, environ["HOME"])
    context = CommandContext(environ=context.environ, cwd=context.cwd, clusters_by_context=context.clusters_by_context,
                             clusters_by_server={**context.clusters_by_server, api: "prod-eu"})
    for _, line in mix[:200]:  # warm: the readers' modules, botocore's models, the store's pages
        check_command(query, line, context)
    by_tool: dict[str, list[float]] = defaultdict(list)
    parse: list[float] = []
    decisions: dict[str, int] = defaultdict(int)
    for tool, line in mix:
        start = time.perf_counter()
        plan_command(line, context)
        parse.append(time.perf_counter() - start)
        start = time.perf_counter()
        answer = check_command(query, line, context)
        by_tool[tool].append(time.perf_counter() - start)
        decisions[answer["decision"]] += 1
    everything = [t for times in by_tool.values() for t in times]
    result = {tool: _ms(times) for tool, times in sorted(by_tool.items())}
    result["all (parse + decide)"] = _ms(everything)
    result["all (parse alone)"] = _ms(parse)
    result["decisions"] = dict(decisions)  # type: ignore[assignment]
    return result


def _ms(samples: list[float]) -> dict[str, float]:
    p = percentiles(samples)
    return {"n": len(samples), "p50_ms": round(p[50] * 1000, 3), "p99_ms": round(p[99] * 1000, 3)}


#: the hook as a regular (wheel) install imports it: the same modules, without the editable install's import
#: finder that site runs first in a checkout (``pip install -e``); site-packages and the checkout on sys.path
WHEEL_LIKE = ("import sys; sys.path[:0] = {paths!r}; from envlabel.service.entry import main; "
              "sys.argv = ['envlabel', 'hook', 'claude-code']; main()")


def measure_hook(runs: int, environ: dict[str, str], command: str, expect_output: bool,
                 wheel_like: bool = False) -> dict[str, float]:
    """Spawn-to-exit of ``envlabel hook claude-code`` answering one Bash call."""
    env = {k: v for k, v in {**os.environ, **environ}.items() if k != "PYTHONDONTWRITEBYTECODE"}
    call = json.dumps({"session_id": "bench", "hook_event_name": "PreToolUse", "tool_name": "Bash",
                       "tool_input": {"command": command}, "cwd": environ["HOME"]})
    argv = [ENVLABEL, "hook", "claude-code"]
    if wheel_like:
        import sysconfig

        paths = [sysconfig.get_paths()["purelib"], str(Path(__file__).resolve().parents[1])]
        argv = [sys.executable, "-S", "-c", WHEEL_LIKE.format(paths=paths)]
    samples = []
    for i in range(runs + 3):  # three warm-up runs: byte-code written, page cache warm
        start = time.perf_counter()
        done = subprocess.run(argv, input=call, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or bool(done.stdout) != expect_output:
            raise RuntimeError(f"the hook answered {done.returncode} {done.stdout!r} {done.stderr!r}")
        if i >= 3:
            samples.append(elapsed)
    return _ms(samples)


def measure_interpreter(runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append(time.perf_counter() - start)
    return _ms(samples)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--hook-runs", type=int, default=50)
    args = parser.parse_args(argv)
    with workdir() as directory:
        query, environ, arns, accounts, (fake, api, config, store) = build(directory)
        try:
            mix = lines(args.lines, arns, accounts, api)
            figures = measure_lines(query, environ, mix, api)
            with BackgroundServer(config, store) as server:
                hook_env = {**environ, "ENVLABEL_URL": server.url}
                unrelated = measure_hook(args.hook_runs, hook_env, "git status && make test | tail -5", False)
                wheel = measure_hook(args.hook_runs, hook_env, "git status && make test | tail -5", False,
                                     wheel_like=True)
                delete = measure_hook(max(10, args.hook_runs // 5), hook_env,
                                      "kubectl delete deployment api -n payments", True)
            interpreter = measure_interpreter(args.hook_runs)
        finally:
            fake.stop()
    rows = [[tool, f["n"], f["p50_ms"], f["p99_ms"]] for tool, f in figures.items() if tool != "decisions"]
    print(f"check-command, {args.lines} lines ({machine()}); decisions {figures['decisions']}")
    print(table(rows, ["lines", "n", "p50 ms", "p99 ms"]))
    print()
    print(table([["hook claude-code, unrelated command (spawn to exit)", unrelated["n"], unrelated["p50_ms"],
                  unrelated["p99_ms"]],
                 ["the same, imported as from a wheel install (no editable-install finder)", wheel["n"],
                  wheel["p50_ms"], wheel["p99_ms"]],
                 ["hook claude-code, kubectl delete checked over HTTP", delete["n"], delete["p50_ms"],
                  delete["p99_ms"]],
                 ["python -c pass (the interpreter alone)", interpreter["n"], interpreter["p50_ms"],
                  interpreter["p99_ms"]]],
                ["hook", "runs", "p50 ms", "p99 ms"]))
    print(json.dumps({"lines": figures, "hook_unrelated": unrelated, "hook_wheel_like": wheel, "hook_delete": delete,
                      "interpreter": interpreter}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
