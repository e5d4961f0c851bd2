"""Authority benchmark: what grants, lookalikes and the decision log add to the check, and the log's write rate.

    .venv/bin/python bench/authority.py                      # a ~4,000-resource estate, 5,000 checks per row
    .venv/bin/python bench/authority.py --accounts 100 --checks 20000

Two configurations over the same store (the synthetic estate of ``_util.Estate``, leaf names repeated across
each team's accounts, so most targets have lookalikes in other environments):

- **on**: grants in the config (the ci-deployer example of docs/approvals.md, and a group grant), the caller a
  principal with a group, lookalikes listed, every answer recorded by the ``BatchedDecisionLog``;
- **off**: no grants, ``Query(..., lookalikes=False)``, no decision log (``log=None``): the check as it was.

1. in process: ``Authority.check_seen`` (the fast path every face takes first) and ``Authority.check``, a read
   action on random stored targets, on and off alternating per target; p50/p99 µs (wall).
2. HTTP: ``POST /v1/check`` one at a time over one httpx keep-alive connection against a ``BackgroundServer`` in
   its own process (so the client's interpreter does not share the server's); p50/p99 µs.
3. decision-log write throughput: :func:`decision_log.bench_decision_log_throughput` (bench/decision_log.py) on a
   fresh SQLite store: decisions/s from 4 threads, and the cost of ``record()`` on the checking thread.

The machine is shared: read p99 as "what a busy 2-core box does", and compare the on/off rows, which run
interleaved under the same load.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _util import Estate, machine, percentiles, table, workdir

THIS = Path(__file__).resolve()
ACTION = "s3:GetObject"  # a read: allowed everywhere by policy and by the grants, so no approval is written
PRINCIPAL, GROUP = "ci-deployer", "agents"
GRANTS = {
    PRINCIPAL: {"sandbox": ["read", "create", "modify", "delete"], "staging": ["read", "create", "modify"],
                "production": ["read"]},
    f"group:{GROUP}": {"sandbox": ["read", "create", "modify", "delete"], "staging": ["read"],
                       "production": ["read"]},
}


def config_for(store_url: str, on: bool) -> Any:
    from envlabel.config import config_from_dict

    extra: dict[str, Any] = {"grants": GRANTS, "principals": {PRINCIPAL: {"groups": [GROUP]}}} if on else \
        {"decisions": {"enabled": False}}
    return config_from_dict({"store": store_url, "stale_after": "3650d", **extra})


def build_store(url: str, estate: Estate) -> list[str]:
    """Commit ``estate`` through the real pipeline; the ids of its resources."""
    from envlabel.labelers.taxonomy import Taxonomy
    from envlabel.model import ScanResult
    from envlabel.service.core.pipeline import commit_scan
    from envlabel.store import open_store

    resources = list(estate.resources())
    store = open_store(url)
    try:
        now = datetime.now(UTC)
        commit_scan(store, Taxonomy(), ScanResult(estate.source, resources, scopes=frozenset({"organization"})),
                    now, now)
    finally:
        store.close()
    return [r.id for r in resources]


# -- in process ------------------------------------------------------------------------------------------
def bench_in_process(url: str, targets: list[str]) -> dict[str, Any]:
    from envlabel.config import DecisionLog as DecisionLogSettings
    from envlabel.service.core.authority import Authority, Caller
    from envlabel.service.core.decision_log import BatchedDecisionLog
    from envlabel.service.core.query import Query
    from envlabel.store import open_store

    store = open_store(url)
    log = BatchedDecisionLog(store, DecisionLogSettings.model_validate({"max_queue": 10 * len(targets) + 1000}))
    log.start()
    try:
        on = Authority(Query(config_for(url, True), store), log=log)
        off = Authority(Query(config_for(url, False), store, lookalikes=False))
        authorities = {"on": (on, Caller(PRINCIPAL, (GROUP,), interface="http")),
                       "off": (off, Caller(interface="http"))}
        for target in targets[:500]:  # warm the page cache and this thread's reader connection
            for authority, caller in authorities.values():
                authority.check(caller, target, ACTION)
        samples: dict[str, dict[str, list[float]]] = {name: {"check_seen": [], "check": []} for name in authorities}
        listed = 0
        clock = time.perf_counter_ns
        for target in targets:
            for name, (authority, caller) in authorities.items():
                start = clock()
                answer = authority.check_seen(caller, target, ACTION)
                samples[name]["check_seen"].append((clock() - start) / 1000)
                start = clock()
                answer = authority.check(caller, target, ACTION)
                samples[name]["check"].append((clock() - start) / 1000)
                listed += len(answer.get("lookalikes", ())) if name == "on" else 0
        log.flush()
    finally:
        log.stop()
        store.close()
    result: dict[str, Any] = {"mean_lookalikes": listed / max(1, len(targets)), "logged": log.written}
    for name, kinds in samples.items():
        for kind, values in kinds.items():
            p = percentiles(values, (50, 99))
            result[f"{name}.{kind}"] = {"p50_us": p[50], "p99_us": p[99]}
    return result


# -- over HTTP --------------------------------------------------------------------------------------------
def serve(url: str, on: bool) -> None:
    """The child: a BackgroundServer for the on/off configuration, its URL on stdout, until stdin closes."""
    from functools import partial

    from envlabel.service.core.query import Query
    from envlabel.service.daemon import server as daemon_server
    from envlabel.store import open_store

    if not on:  # the server builds its own Query: the only switch for lookalikes is the Query's own
        vars(daemon_server)["Query"] = partial(Query, lookalikes=False)
    store = open_store(url)
    with daemon_server.BackgroundServer(config_for(url, on), store) as served:
        print(json.dumps({"url": served.url}), flush=True)
        sys.stdin.read()


def bench_http(url: str, targets: list[str], on: bool) -> dict[str, Any]:
    import httpx

    child = subprocess.Popen([sys.executable, str(THIS), "--serve", "on" if on else "off", "--store", url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        base = json.loads(child.stdout.readline())["url"]
        headers = {"X-Envlabel-Principal": PRINCIPAL} if on else {}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for target in targets[:300]:  # warm up
                client.post("/v1/check", json={"target": target, "action": ACTION})
            samples = []
            clock = time.perf_counter_ns
            for target in targets:
                start = clock()
                response = client.post("/v1/check", json={"target": target, "action": ACTION})
                samples.append((clock() - start) / 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"POST /v1/check answered {response.status_code}: {response.text[:300]}")
        p = percentiles(samples, (50, 99))
        return {"p50_us": p[50], "p99_us": p[99]}
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=40, help="accounts of 100 resources each (default 40)")
    parser.add_argument("--checks", type=int, default=5000, help="checks per row (default 5000)")
    parser.add_argument("--decisions", type=int, default=50_000, help="decisions for the log's write rate")
    parser.add_argument("--serve", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.store, args.serve == "on")
        return 0
    from decision_log import bench_decision_log_throughput

    estate = Estate(accounts=args.accounts, per_account=100)
    with workdir() as work:
        url = f"sqlite:///{work / 'authority.db'}"
        ids = build_store(url, estate)
        rng = random.Random(15)
        targets = [rng.choice(ids) for _ in range(args.checks)]
        local = bench_in_process(url, targets)
        http = {name: bench_http(url, targets, name == "on") for name in ("off", "on")}
        written = bench_decision_log_throughput(f"sqlite:///{work / 'decisions.db'}", args.decisions)
    print(f"authority: {len(ids):,} resources, {args.checks:,} checks per row ({ACTION}); {machine()}")
    print(f"on: grants + lookalikes (mean {local['mean_lookalikes']:.1f} listed per answer) + decision log "
          f"({local['logged']:,} logged); off: none of them")
    rows = []
    for kind, label in (("check_seen", "in process, Authority.check_seen"), ("check", "in process, Authority.check")):
        off, on = local[f"off.{kind}"], local[f"on.{kind}"]
        rows.append((label, f"{off['p50_us']:.0f}", f"{off['p99_us']:.0f}", f"{on['p50_us']:.0f}",
                     f"{on['p99_us']:.0f}"))
    rows.append(("HTTP, POST /v1/check (httpx keep-alive)", f"{http['off']['p50_us']:.0f}",
                 f"{http['off']['p99_us']:.0f}", f"{http['on']['p50_us']:.0f}", f"{http['on']['p99_us']:.0f}"))
    print(table(rows, ("check", "off p50 µs", "off p99 µs", "on p50 µs", "on p99 µs")))
    print()
    print(table([("SQLite", f"{written['decisions_per_s']:,.0f}", f"{written['record_p50_us']:.1f}",
                  f"{written['record_p99_us']:.1f}", f"{written['written']:,}", written["dropped"])],
                ("decision log", "written/s (4 threads)", "record() p50 µs", "record() p99 µs", "written",
                 "dropped")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
