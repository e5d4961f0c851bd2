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
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _util import Estate, emit_child_result, machine, run_child, table, timed, workdir

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
    from envlabel.model import ScanResult
    from labelers.taxonomy import Taxonomy
    from service.pipeline import commit_scan
    from store import open_store

    store = open_store(f"sqlite:///{db}")
    history_before = label_rows(db)
    result = ScanResult(estate.source, estate.resources(), scopes=frozenset({"organization"}))  # type: ignore[arg-type]
    with timed() as clock:
        summary = commit_scan(store, Taxonomy(), result, datetime.now(UTC))
    store.close()
    return {"resources": summary.resources, "written": summary.written, "label_changes": summary.label_changes,
            "history_rows_added": label_rows(db) - history_before, "environments": dict(summary.environments),
            "wall": clock.wall, "cpu": clock.cpu, "db_mib": round(Path(db).stat().st_size / 2**20, 1)}


CHILDREN = {"generate": child_generate, "commit": child_commit}


def run_as_child(args: argparse.Namespace) -> None:
    estate = Estate(accounts=args.accounts, per_account=args.per_account)
    if args.child == "generate":
        emit_child_result(child_generate(estate))
    else:
        emit_child_result(child_commit(estate, args.db))


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


def _row(what: str, r: dict[str, Any], n: int, note: str = "") -> list[object]:
    return [what, f"{n:,}", f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{n / r['wall']:,.0f}",
            f"{r['peak_rss_mib']:.0f}", note]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "offline", "live"], default="all")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=1000)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_as_child(args)
        return 0
    print(f"machine: {machine()}")
    rows: list[list[object]] = []
    if args.part in ("all", "offline"):
        rows += offline(args)
    print(table(rows, ["part", "resources", "wall s", "cpu s", "resources/s", "peak RSS MiB", "note"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
