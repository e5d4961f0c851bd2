"""Scan benchmark: labeling + storage throughput, live scan overhead, and an unchanged re-scan.

    .venv/bin/python bench/scan.py                  # all parts, full size (1M offline, 5,000 live)
    .venv/bin/python bench/scan.py --part offline --accounts 100   # a quick smaller run

1. offline: a synthetic 1,000-account estate (~1,000,000 observations, generated lazily)
   -> service.pipeline.commit_scan into a fresh SQLite file; then the same estate again
   (nothing changed: zero rows written). Targets: >= 20,000 resources/s, peak RSS <= 1 GiB.
2. live: a ~5,000-resource estate on a moto server subprocess; the AwsScanner's scan time next
   to the bare boto3 calls it needs (same pages, no labeling, no storage); target ratio <= 1.3.
   Then scan + commit, and a re-scan of the unchanged estate (zero label rows written).

Each measured part runs in its own child process, so its peak RSS is its own. Nothing is
written outside bench/out/ (gitignored) and a temporary directory removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _util import (
    Estate,
    build_moto_estate,
    emit_child_result,
    machine,
    run_child,
    start_moto,
    table,
    timed,
    workdir,
)

THIS = Path(__file__).resolve()
TARGET_RATE = 20_000
TARGET_RSS_MIB = 1024


# -- children (measured parts) ---------------------------------------------------------------------
def label_rows(db: str) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM label_history").fetchone()[0])


def child_generate(estate: Estate) -> dict[str, Any]:
    """The cost of the synthetic data alone, to tell it apart from the pipeline's."""
    with timed() as clock:
        count = sum(1 for _ in estate.resources())
    return {"resources": count, "wall": clock.wall, "cpu": clock.cpu}


def child_commit(estate: Estate, db: str) -> dict[str, Any]:
    from envlabel.labelers.taxonomy import Taxonomy
    from envlabel.model import ScanResult
    from envlabel.service.core.pipeline import commit_scan
    from envlabel.store import open_store

    store = open_store(f"sqlite:///{db}")
    history_before = label_rows(db)
    result = ScanResult(estate.source, estate.resources(), scopes=frozenset({"organization"}))  # type: ignore[arg-type]
    with timed() as clock:
        summary = commit_scan(store, Taxonomy(), result, datetime.now(UTC))
    store.close()
    return {"resources": summary.resources, "written": summary.written, "label_changes": summary.label_changes,
            "history_rows_added": label_rows(db) - history_before, "environments": dict(summary.environments),
            "wall": clock.wall, "cpu": clock.cpu, "db_mib": round(Path(db).stat().st_size / 2**20, 1)}


@dataclass(frozen=True)
class Call:
    """One boto3 API call the scanner made, as the caller passed it."""

    thread: str
    credentials: Any
    region: str
    service: str
    operation: str
    params: dict[str, Any]


class Recorder:
    """A session factory for AwsScanner that records every API call (botocore's own event hook)."""

    def __init__(self) -> None:
        from envlabel.discovery.aws import make_sessions

        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._make = make_sessions()

    def __call__(self, credentials: Any) -> Any:
        session = self._make(credentials)

        def record(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            call = Call(threading.current_thread().name, credentials, context.get("client_region") or "",
                        model.service_model.service_name, model.name, copy.deepcopy(params))
            with self._lock:
                self.calls.append(call)

        session.events.register("provide-client-params", record)
        return session


def replay(calls: list[Call], endpoint_url: str) -> None:
    """The same calls (same pages) with bare boto3 clients, one thread per scanner thread, in its order."""
    from botocore import xform_name
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from envlabel.discovery.aws import make_sessions

    make = make_sessions()
    config = Config(retries={"mode": "standard", "max_attempts": 8})
    by_thread: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_thread[call.thread].append(call)

    def run(sequence: list[Call]) -> None:
        sessions: dict[Any, Any] = {}
        clients: dict[tuple[Any, str, str], Any] = {}
        for call in sequence:
            key = (call.credentials, call.region, call.service)
            client = clients.get(key)
            if client is None:
                session = sessions.get(call.credentials) or sessions.setdefault(call.credentials,
                                                                                make(call.credentials))
                client = clients[key] = session.client(call.service, region_name=call.region,
                                                       endpoint_url=endpoint_url, config=config)
            # an error answer the scanner expects too (NoSuchTagSet: a bucket without tags) costs the same
            with contextlib.suppress(ClientError):
                getattr(client, xform_name(call.operation))(**call.params)

    with ThreadPoolExecutor(max_workers=len(by_thread)) as pool:
        list(pool.map(run, by_thread.values()))


def child_live(accounts: int, instances: int, repeats: int, db: str) -> dict[str, Any]:
    from envlabel.config import AwsSource
    from envlabel.discovery.aws import AwsScanner
    from envlabel.labelers.taxonomy import Taxonomy
    from envlabel.model import ScanResult
    from envlabel.service.core.pipeline import commit_scan
    from envlabel.service.demo.estate import DEMO_AWS_ENV, REGIONS
    from envlabel.store import open_store

    os.environ.update(DEMO_AWS_ENV)
    url, moto = start_moto()
    try:
        with timed() as build:
            build_moto_estate(url, accounts, instances)
        source = AwsSource(name="bench-aws", type="aws", endpoint_url=url, regions=list(REGIONS), organization=True)
        recorder = Recorder()
        recorded = AwsScanner(source, session_factory=recorder).scan()
        assert recorded.complete, recorded.errors
        scans: list[float] = []
        bares: list[float] = []
        result: ScanResult = recorded
        for _ in range(repeats):  # alternate, so load on a shared machine hits both alike
            with timed() as clock:
                result = AwsScanner(source).scan()
            scans.append(clock.wall)
            with timed() as clock:
                replay(recorder.calls, url)
            bares.append(clock.wall)
        store = open_store(f"sqlite:///{db}")
        with timed() as commit:
            first = commit_scan(store, Taxonomy(), result, datetime.now(UTC))
        history = label_rows(db)
        with timed() as again:
            rescan = commit_scan(store, Taxonomy(), AwsScanner(source).scan(), datetime.now(UTC))
        store.close()
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    operations = Counter(f"{c.service}:{c.operation}" for c in recorder.calls)
    return {"resources": first.resources, "build_s": build.wall, "calls": len(recorder.calls),
            "threads": len({c.thread for c in recorder.calls}), "top_calls": operations.most_common(6),
            "scan_s": min(scans), "scan_median_s": statistics.median(scans), "bare_s": min(bares),
            "bare_median_s": statistics.median(bares), "commit_s": commit.wall, "label_changes": first.label_changes,
            "rescan_s": again.wall, "rescan_written": rescan.written, "rescan_label_changes": rescan.label_changes,
            "rescan_history_rows": label_rows(db) - history, "environments": dict(first.environments)}


CHILDREN = ("generate", "commit", "live")


def run_as_child(args: argparse.Namespace) -> None:
    estate = Estate(accounts=args.accounts, per_account=args.per_account)
    if args.child == "generate":
        emit_child_result(child_generate(estate))
    elif args.child == "commit":
        emit_child_result(child_commit(estate, args.db))
    else:
        emit_child_result(child_live(args.live_accounts, args.live_instances, args.repeats, args.db))


# -- the parent: runs the children and prints the table --------------------------------------------
def offline(args: argparse.Namespace) -> list[list[object]]:
    sizes = ["--accounts", str(args.accounts), "--per-account", str(args.per_account)]
    rows: list[list[object]] = []
    with workdir() as tmp:
        db = str(tmp / "bench.db")
        gen = run_child(THIS, "--child", "generate", *sizes)
        rows.append(_row("generate synthetic estate only", gen, gen["resources"]))
        first = run_child(THIS, "--child", "commit", "--db", db, *sizes)
        rows.append(_row("first scan: commit_scan -> SQLite", first, first["resources"],
                         f"{first['label_changes']} labels, db {first['db_mib']} MiB"))
        again = run_child(THIS, "--child", "commit", "--db", db, *sizes)
        rows.append(_row("unchanged re-scan", again, again["resources"],
                         f"{again['written']} rows, {again['history_rows_added']} label rows written"))
    print(f"environments: {first['environments']}")
    rate = first["resources"] / first["wall"]
    print(f"first scan {rate:,.0f} resources/s wall (target >= {TARGET_RATE:,}), "
          f"peak RSS {first['peak_rss_mib']} MiB (target <= {TARGET_RSS_MIB})")
    assert again["written"] == 0 and again["label_changes"] == 0 and again["history_rows_added"] == 0, again
    return rows


def live(args: argparse.Namespace) -> list[list[object]]:
    with workdir() as tmp:
        r = run_child(THIS, "--child", "live", "--db", str(tmp / "live.db"), "--live-accounts", str(args.live_accounts),
                      "--live-instances", str(args.live_instances), "--repeats", str(args.repeats))
    n = r["resources"]
    ratio = r["scan_s"] / r["bare_s"]
    print(f"live estate: {n:,} resources in moto (built in {r['build_s']:.0f}s), {r['calls']} API calls on "
          f"{r['threads']} threads; busiest: {', '.join(f'{op} x{k}' for op, k in r['top_calls'])}")
    print(f"environments: {r['environments']}")
    print(f"scan / bare boto3 calls = {r['scan_s']:.2f}s / {r['bare_s']:.2f}s = {ratio:.2f}x (target <= 1.3x; "
          f"medians {r['scan_median_s']:.2f}s / {r['bare_median_s']:.2f}s over {args.repeats} runs)")
    assert r["rescan_written"] == 0 and r["rescan_label_changes"] == 0 and r["rescan_history_rows"] == 0, r
    peak = f"{r['peak_rss_mib']:.0f}"
    return [["live: bare boto3 calls (same pages)", f"{n:,}", f"{r['bare_s']:.2f}", "", f"{n / r['bare_s']:,.0f}",
             "", f"{r['calls']} calls"],
            ["live: AwsScanner.scan()", f"{n:,}", f"{r['scan_s']:.2f}", "", f"{n / r['scan_s']:,.0f}", "",
             f"{ratio:.2f}x the bare calls"],
            ["live: scan + commit (first)", f"{n:,}", f"{r['scan_s'] + r['commit_s']:.2f}", "",
             f"{n / (r['scan_s'] + r['commit_s']):,.0f}", peak, f"{r['label_changes']} labels"],
            ["live: re-scan + commit, unchanged", f"{n:,}", f"{r['rescan_s']:.2f}", "", f"{n / r['rescan_s']:,.0f}",
             peak, f"{r['rescan_written']} rows, {r['rescan_history_rows']} label rows written"]]


def _row(what: str, r: dict[str, Any], n: int, note: str = "") -> list[object]:
    return [what, f"{n:,}", f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{n / r['wall']:,.0f}",
            f"{r['peak_rss_mib']:.0f}", note]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "offline", "live"], default="all")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=1000)
    parser.add_argument("--live-accounts", type=int, default=12, help="member accounts of the live estate")
    parser.add_argument("--live-instances", type=int, default=200, help="instances per account and region")
    parser.add_argument("--repeats", type=int, default=3, help="live scans and replays to time (best is shown)")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_as_child(args)
        return 0
    print(f"machine: {machine()}")
    header = ["part", "resources", "wall s", "cpu s", "resources/s", "peak RSS MiB", "note"]
    for name, part in (("offline", offline), ("live", live)):
        if args.part in ("all", name):
            print(table(part(args), header), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
