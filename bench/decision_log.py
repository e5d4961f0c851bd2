"""Decision-log benchmark: what recording a check costs the check, and how fast the writer empties the queue.

    .venv/bin/python bench/decision_log.py                      # SQLite (and PostgreSQL if the variable is set)
    .venv/bin/python bench/decision_log.py --decisions 20000    # a quicker pass
    ENVLABEL_TEST_POSTGRES_URL=postgresql://USER@HOST/DB .venv/bin/python bench/decision_log.py

For each store (a SQLite file under bench/out/, in WAL mode as the store runs it; PostgreSQL in a fresh schema
when ``ENVLABEL_TEST_POSTGRES_URL`` is set):

1. ``record()``: the cost on the caller's thread of :meth:`BatchedDecisionLog.record` (build the row, enqueue),
   p50/p99 of single calls while the writer runs, in µs. Answers come from the real ``Authority`` over a small
   synthetic estate (``_util.Estate``), so they carry real labels, reasons and rules.
2. throughput: ``--decisions`` recorded from 4 threads as fast as they go, then ``flush()``: decisions/s from the
   first record to the last row committed (config defaults: batch_size 500, flush_interval 200ms; ``max_queue``
   raised so nothing is dropped), with each batch's label snapshot read.

:func:`bench_decision_log_throughput` is the function bench/authority.py calls for its own report.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from _util import Estate, machine, percentiles, table, workdir

THREADS = 4
RECORD_SAMPLES = 20_000


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A store URL in a new schema of ``base``'s database, dropped afterwards."""
    from urllib.parse import quote

    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def answers_from(store: Any, estate: Estate, count: int = 500) -> list[tuple[Any, Any]]:
    """``count`` (answer, caller) pairs made by the real Authority on random targets of ``estate``."""
    from envlabel.config import config_from_dict
    from envlabel.service.core.authority import Authority, Caller
    from envlabel.service.core.query import Query

    authority = Authority(Query(config_from_dict({}), store))
    targets = [r.id for r in estate.resources()]
    rng = random.Random(7)
    pairs = []
    for i in range(count):
        caller = Caller(f"agent-{i % 8}", groups=("agents",), interface="http")
        pairs.append((authority.check(caller, rng.choice(targets), "s3:GetObject"), caller))
    return pairs


def populated(url: str, estate: Estate) -> Any:
    from envlabel.labelers.taxonomy import Taxonomy
    from envlabel.model import ScanResult
    from envlabel.service.core.pipeline import commit_scan
    from envlabel.store import open_store

    store = open_store(url)
    now = datetime.now(UTC)
    commit_scan(store, Taxonomy(), ScanResult(estate.source, list(estate.resources()),
                                              scopes=frozenset({"organization"})), now, now)
    return store


def bench_decision_log_throughput(url: str, decisions: int = 100_000, estate: Estate | None = None) -> dict[str, Any]:
    """The figures for one store URL (an empty store: it is populated here): ``record_p50_us``, ``record_p99_us``,
    ``record_mean_us``, ``decisions_per_s``, ``written``, ``dropped``, ``failed``."""
    from envlabel.config import DecisionLog as DecisionLogSettings
    from envlabel.service.core.decision_log import BatchedDecisionLog

    estate = estate or Estate(accounts=20, per_account=100)
    store = populated(url, estate)
    try:
        pairs = answers_from(store, estate)
        settings = DecisionLogSettings.model_validate({"max_queue": max(100, decisions + RECORD_SAMPLES)})
        log = BatchedDecisionLog(store, settings).start()
        samples = record_samples(log, pairs)
        log.flush()
        per_thread = decisions // THREADS
        started = time.perf_counter()
        threads = [threading.Thread(target=record_many, args=(log, pairs, per_thread)) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recorded_in = time.perf_counter() - started
        log.flush()
        elapsed = time.perf_counter() - started
        log.stop()
        p = percentiles(samples)
        return {"record_p50_us": p[50], "record_p99_us": p[99], "record_mean_us": sum(samples) / len(samples),
                "decisions": per_thread * THREADS, "recorded_s": recorded_in, "elapsed_s": elapsed,
                "decisions_per_s": per_thread * THREADS / elapsed, "written": log.written, "dropped": log.dropped,
                "failed": log.failed}
    finally:
        store.close()


def record_samples(log: Any, pairs: list[tuple[Any, Any]]) -> list[float]:
    """µs per single ``record()`` call, the writer running."""
    samples = []
    clock = time.perf_counter_ns
    for i in range(RECORD_SAMPLES):
        answer, caller = pairs[i % len(pairs)]
        now = datetime.now(UTC)
        start = clock()
        log.record(answer, caller, now)
        samples.append((clock() - start) / 1000)
    return samples


def record_many(log: Any, pairs: list[tuple[Any, Any]], count: int) -> None:
    record = log.record
    for i in range(count):
        answer, caller = pairs[i % len(pairs)]
        record(answer, caller, datetime.now(UTC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    args = parser.parse_args()
    rows = []
    with workdir() as work:
        rows.append(("sqlite", bench_decision_log_throughput(f"sqlite:///{work / 'decisions.db'}", args.decisions)))
    if base := os.environ.get("ENVLABEL_TEST_POSTGRES_URL"):
        with postgres_schema(base) as url:
            rows.append(("postgresql", bench_decision_log_throughput(url, args.decisions)))
    print(f"decision log, {args.decisions:,} decisions from {THREADS} threads; {machine()}")
    print(table([(name, f"{r['record_p50_us']:.1f}", f"{r['record_p99_us']:.1f}", f"{r['record_mean_us']:.1f}",
                  f"{r['decisions_per_s']:,.0f}", f"{r['written']:,}", r["dropped"], r["failed"])
                 for name, r in rows],
                ("store", "record p50 µs", "record p99 µs", "record mean µs", "written/s", "written", "dropped",
                 "failed")))


if __name__ == "__main__":
    main()
