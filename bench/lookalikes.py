"""Lookalikes benchmark: what listing same-named resources in other environments adds to a label lookup.

    .venv/bin/python bench/lookalikes.py                     # a 100,000-resource store (built once, ~1 min)
    .venv/bin/python bench/lookalikes.py --accounts 1000     # the 1,000,000-resource store of bench/query.py

``Query.label`` on random stored targets, in process, with lookalikes on and off (``Query(..., lookalikes=False)``),
alternating per target so both see the same page cache and the same machine load. Also: the re-stemming of the
whole store (``Store.ensure_stems`` after the taxonomy's words change), which a config change costs once.

The synthetic estate (bench/_util.Estate) repeats leaf names across the accounts of a team (``orders-instance-5``
of ~100 accounts in every environment), so a lookalike read meets ~100 rows of one stem: a realistic worst
case, not the empty index. :func:`bench_label_lookalikes` is the function the authority benchmark calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _util import Estate, percentiles, table, timed

THIS = Path(__file__).resolve()


def bench_label_lookalikes(store_url: str, targets: list[str], *, config: Any = None) -> dict[str, Any]:
    """``Query.label`` p50/p99 (microseconds, wall and thread CPU) of ``targets`` with lookalikes on and off,
    and the mean number listed. ``config``: the Config to label with (default: the store alone, never stale)."""
    from envlabel.config import config_from_dict
    from envlabel.service.core.query import Query
    from envlabel.store import open_store

    config = config or config_from_dict({"store": store_url, "stale_after": "3650d"})
    store = open_store(store_url)
    try:
        queries = {"on": Query(config, store), "off": Query(config, store, lookalikes=False)}
        for target in targets[:1000]:  # warm the page cache and the thread's reader connection
            for query in queries.values():
                query.label(target)
        wall: dict[str, list[float]] = {"on": [], "off": []}
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        listed = 0
        clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
        for target in targets:
            for name, query in queries.items():
                start, cpu_start = clock(), cpu_clock()
                body = query.label(target)
                cpu[name].append((cpu_clock() - cpu_start) / 1000)
                wall[name].append((clock() - start) / 1000)
                listed += len(body.get("lookalikes", ()))
    finally:
        store.close()
    result: dict[str, Any] = {"n": len(targets), "mean_listed": listed / max(1, len(targets))}
    for name in queries:
        w, c = percentiles(wall[name], (50, 99)), percentiles(cpu[name], (50, 99))
        result[name] = {"p50_us": w[50], "p99_us": w[99], "cpu_p50_us": c[50], "cpu_p99_us": c[99]}
    return result


def bench_restem(store_url: str) -> dict[str, Any]:
    """Seconds to re-stem every resource once (a synonym renamed), and how many stems changed."""
    from envlabel.labelers.stems import Stemmer
    from envlabel.labelers.taxonomy import Taxonomy
    from envlabel.store import open_store

    store = open_store(store_url)
    try:
        renamed = Stemmer.of(Taxonomy(name_tokens={"staging": ["instance"]}))  # changes many stems
        with timed() as clock:
            changed = store.ensure_stems(renamed.fingerprint, renamed)
        default = Stemmer.of(Taxonomy())
        store.ensure_stems(default.fingerprint, default)  # and back, for the next run
    finally:
        store.close()
    return {"seconds": clock.wall, "changed": changed}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(THIS.parent))
    from query import build_store, sample_targets, store_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100, help="accounts of 1,000 resources (default 100)")
    parser.add_argument("--targets", type=int, default=5000)
    args = parser.parse_args(argv)
    path = store_path(args.accounts)  # the store bench/query.py builds, shared with it
    build_store(Estate(accounts=args.accounts), path)
    url = f"sqlite:///{path}"
    label = bench_label_lookalikes(url, sample_targets(path, args.targets))
    restem = bench_restem(url)
    rows = [[name, f"{label[name]['p50_us']:.0f}", f"{label[name]['p99_us']:.0f}",
             f"{label[name]['cpu_p50_us']:.0f}", f"{label[name]['cpu_p99_us']:.0f}"] for name in ("off", "on")]
    print(table(rows, ["lookalikes", "p50 us", "p99 us", "CPU p50 us", "CPU p99 us"]))
    print(f"\n{label['n']:,} targets, {label['mean_listed']:.1f} lookalikes listed per label on average; "
          f"re-stemming the store: {restem['seconds']:.1f} s ({restem['changed']:,} stems changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
