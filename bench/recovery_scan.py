"""Recovery-facts benchmark: the extra AWS calls and scan time of ``recovery_facts: true`` against ``false``.

    .venv/bin/python bench/recovery_scan.py                       # 12 accounts x 2 regions x 200 instances
    .venv/bin/python bench/recovery_scan.py --accounts 3 --instances 50   # a quick smaller run

The estate is bench/scan.py's live one (bench/_util.py build_moto_estate: instances, a table per region, a
bucket per account) on a moto server subprocess. Both scans run alternately ``--repeats`` times (best and
median shown); every call of one scan each way is recorded and counted by operation. moto answers in about a
millisecond, so the time here is mostly the scanner's own; against AWS each extra call costs its round trip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from _util import build_moto_estate, machine, start_moto, table, timed
from scan import Recorder

THIS = Path(__file__).resolve()


def run(accounts: int, instances: int, repeats: int) -> dict[str, Any]:
    from envlabel.config import AwsSource
    from envlabel.discovery.aws import AwsScanner
    from envlabel.service.demo.estate import DEMO_AWS_ENV, REGIONS

    os.environ.update(DEMO_AWS_ENV)
    url, moto = start_moto()
    try:
        with timed() as build:
            build_moto_estate(url, accounts, instances)
        sources = {facts: AwsSource(name="bench-aws", type="aws", endpoint_url=url, regions=list(REGIONS),
                                    organization=True, recovery_facts=facts) for facts in (True, False)}
        out: dict[str, Any] = {"build_s": build.wall}
        for facts, source in sources.items():
            recorder = Recorder()
            result = AwsScanner(source, session_factory=recorder).scan()
            assert result.complete, result.errors
            out[f"calls_{facts}"] = Counter(f"{c.service}:{c.operation}" for c in recorder.calls)
            out[f"resources_{facts}"] = len(result.resources)
            out[f"with_facts_{facts}"] = sum(1 for r in result.resources if r.facts)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats):  # alternate, so load on a shared machine hits both alike
            for facts, source in sources.items():
                with timed() as clock:
                    AwsScanner(source).scan()
                times[facts].append(clock.wall)
        out |= {f"best_{f}": min(t) for f, t in times.items()} | {f"median_{f}": statistics.median(t)
                                                                   for f, t in times.items()}
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=12, help="member accounts of the live estate")
    parser.add_argument("--instances", type=int, default=200, help="instances per account and region")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    r = run(args.accounts, args.instances, args.repeats)
    on, off = r["calls_True"], r["calls_False"]
    extra = on - off
    print(f"estate: {args.accounts} member accounts x 2 regions x {args.instances} instances, built in "
          f"{r['build_s']:.0f}s; {r['resources_False']:,} resources without facts, {r['resources_True']:,} with "
          f"(EBS volumes and KMS keys listed), {r['with_facts_True']:,} carrying facts")
    rows = [["recovery_facts: false", f"{r['resources_False']:,}", sum(off.values()), f"{r['best_False']:.2f}",
             f"{r['median_False']:.2f}"],
            ["recovery_facts: true", f"{r['resources_True']:,}", sum(on.values()), f"{r['best_True']:.2f}",
             f"{r['median_True']:.2f}"]]
    print(table(rows, ["scan", "resources", "API calls", "best s", "median s"]))
    print(f"extra calls: {sum(extra.values())} "
          f"({sum(extra.values()) / max(1, sum(off.values())):.1f}x the scan without facts); by operation: "
          + ", ".join(f"{op} {n}" for op, n in extra.most_common()))
    print(f"time: {r['best_True'] / r['best_False']:.2f}x the scan without facts (best of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
