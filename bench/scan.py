"""Scan benchmark: labeling + storage throughput, live scan overhead, and an unchanged re-scan.

    .venv/bin/python bench/scan.py                  # all parts, full size (1M offline, 5,000 live)
    .venv/bin/python bench/scan.py --part offline --accounts 100   # a quick smaller run
    .venv/bin/python bench/scan.py --part live --live-scale 0.1     # a quick live run

1. offline: a synthetic 1,000-account estate (~1,000,000 observations, generated lazily)
   -> service.pipeline.commit_scan into a fresh SQLite file; then the same estate again
   (nothing changed: zero rows written). Targets (issue 18): >= 30,000 resources/s, peak RSS <= 512 MiB.
2. live: one ~5,000-resource account on a moto server subprocess (3,000 instances, 600 buckets,
   500 functions, 250 databases, security groups, VPCs, tables, over two regions), scanned with
   ``recovery_facts: false`` (recovery facts cost calls by design) next to the minimal boto3 listing
   that reads the same resources and tags (the Describe*/List* paginators, the tagging index per
   region, one ListBuckets; no labeling, no storage). Targets: wall <= 1.1x, CPU <= 1.5x, calls <= 2x.
   Then scan + commit, and a re-scan of the unchanged estate (zero label rows written).

Each measured part runs in its own child process, so its peak RSS is its own. Nothing is
written outside bench/out/ (gitignored) and a temporary directory removed afterwards.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _util import (
    Estate,
    emit_child_result,
    machine,
    run_child,
    start_moto,
    table,
    timed,
    workdir,
)

THIS = Path(__file__).resolve()
TARGET_RATE = 30_000
TARGET_RSS_MIB = 512


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


#: environment tags as people write them (the first of each is clean); "none" says nothing usable
_TAGS: dict[str, tuple[dict[str, str], ...]] = {
    "production": ({"Environment": "production"}, {"env": "prd", "Owner": "payments"}, {"Environment": "Prod-EU"}),
    "staging": ({"Environment": "staging"}, {"Stage": "UAT", "CostCenter": "1001"}, {"env": "stg"}),
    "sandbox": ({"Environment": "sandbox"}, {"ENV": "dev"}, {"env": "test", "Project": "orders"}),
    "none": ({"Environment": "nonprod"}, {"owner": "team-a"}, {}),
}


def build_account(endpoint_url: str, scale: float = 1.0) -> dict[str, int]:
    """One account of ~5,000 resources over two regions (at ``scale`` 1): 3,000 instances, 600 buckets,
    500 functions, 250 databases, 400 security groups, 20 VPCs with 40 subnets and 100 tables, messily
    tagged; a third of the buckets untagged. Returns what was made, by kind."""
    import io
    import json
    import zipfile

    from envlabel.service.demo.estate import REGIONS, aws_tags

    def part(n: int) -> int:
        return max(1, round(n * scale / len(REGIONS)))

    made: Counter[str] = Counter()
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    session = boto3_session()
    role = session.client("iam", endpoint_url=endpoint_url).create_role(
        RoleName="bench-lambda", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    for r, region in enumerate(REGIONS):
        ec2, rds, fns, ddb, s3 = (session.client(service, region_name=region, endpoint_url=endpoint_url)
                                  for service in ("ec2", "rds", "lambda", "dynamodb", "s3"))
        subnets = []
        for v in range(part(20)):
            vpc = ec2.create_vpc(CidrBlock=f"10.{v}.0.0/16", TagSpecifications=[
                {"ResourceType": "vpc", "Tags": aws_tags({"Name": f"vpc-{v}", **_TAGS["production"][v % 3]})}])
            vpc_id = vpc["Vpc"]["VpcId"]
            subnets += [ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.{v}.{s}.0/24")["Subnet"]["SubnetId"]
                        for s in range(2)]
            for g in range(part(400) // part(20)):
                ec2.create_security_group(GroupName=f"sg-{v}-{g}", Description="bench", VpcId=vpc_id)
                made["ec2:security-group"] += 1
            made["ec2:vpc"] += 1
        made["ec2:subnet"] += len(subnets)
        for n, start in enumerate(range(0, part(3000), 50)):
            count = min(50, part(3000) - start)
            tags = {"Name": f"worker-{n}", **_TAGS["sandbox" if n % 4 else "none"][n % 3]}
            ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, InstanceType="t3.micro",
                              SubnetId=subnets[n % len(subnets)],
                              TagSpecifications=[{"ResourceType": "instance", "Tags": aws_tags(tags)}])
            made["ec2:instance"] += count
        for n in range(part(250)):
            rds.create_db_instance(DBInstanceIdentifier=f"db-{r}-{n}", DBInstanceClass="db.t3.micro",
                                   Engine="postgres", MasterUsername="bench", MasterUserPassword="not-a-secret-1",
                                   AllocatedStorage=20, Tags=aws_tags(_TAGS["production"][n % 3]))
            made["rds:db"] += 1
        for n in range(part(500)):
            fns.create_function(FunctionName=f"fn-{r}-{n}", Runtime="python3.12", Role=role,
                                Handler="handler.handler", Code={"ZipFile": code.getvalue()},
                                Tags=_TAGS["staging"][n % 3])
            made["lambda:function"] += 1
        for n in range(part(100)):
            ddb.create_table(TableName=f"table-{r}-{n}", BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                             Tags=aws_tags(_TAGS["sandbox"][n % 3]))
            made["dynamodb:table"] += 1
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        for n in range(part(600)):
            name = f"bench-{region}-{n}"
            s3.create_bucket(Bucket=name, **location)
            if n % 3:
                s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": aws_tags(_TAGS["production"][n % 3])})
            made["s3:bucket"] += 1
    return dict(made)


def boto3_session() -> Any:
    """A plain boto3 session: the minimal listing's, and the estate builder's."""
    import boto3

    return boto3.Session()


#: the minimal listing: per region, every Describe*/List* paginator that finds the kinds envlabel labels, plus
#: the tagging index (Lambda, DynamoDB, S3 and every other kind's tags); globally, one ListBuckets
MINIMAL_REGIONAL = (
    ("ec2", "describe_vpcs", {}), ("ec2", "describe_subnets", {}), ("ec2", "describe_security_groups", {}),
    ("ec2", "describe_instances", {"Filters": [{"Name": "instance-state-name", "Values": [
        "pending", "running", "shutting-down", "stopping", "stopped"]}]}),
    ("rds", "describe_db_instances", {}), ("rds", "describe_db_clusters", {}), ("eks", "list_clusters", {}),
    ("lambda", "list_functions", {}), ("dynamodb", "list_tables", {}),
    ("resourcegroupstaggingapi", "get_resources", {"ResourcesPerPage": 100}),
)


def minimal_listing(endpoint_url: str, regions: tuple[str, ...]) -> int:
    """The fewest boto3 calls that read the same resources and tags, on the scanner's parallelism (one thread
    per region and one for S3); returns the number of calls (pages)."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 8})
    session = boto3_session()
    clients = {(service, region): session.client(service, region_name=region, endpoint_url=endpoint_url,
                                                 config=config)
               for region in regions for service, _, _ in MINIMAL_REGIONAL}
    s3 = session.client("s3", region_name=regions[0], endpoint_url=endpoint_url, config=config)

    def region_pages(region: str) -> int:
        return sum(1 for service, operation, params in MINIMAL_REGIONAL
                   for _ in clients[(service, region)].get_paginator(operation).paginate(**params))

    def bucket_pages() -> int:
        return sum(1 for _ in s3.get_paginator("list_buckets").paginate())

    with ThreadPoolExecutor(max_workers=len(regions) + 1) as pool:
        futures = [pool.submit(region_pages, region) for region in regions] + [pool.submit(bucket_pages)]
        return sum(f.result() for f in futures)


def child_live(scale: float, repeats: int, db: str) -> dict[str, Any]:
    """envlabel's live scan next to the minimal listing, alternately, on one moto account.

    The source reads no recovery facts (``recovery_facts: false``): those calls (snapshots, per-instance
    termination protection, bucket versioning...) are extra by design, and the minimal listing has no
    counterpart for them."""
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
            made = build_account(url, scale)
        source = AwsSource(name="bench-aws", type="aws", endpoint_url=url, regions=list(REGIONS),
                           organization=False, recovery_facts=False)
        recorder = Recorder()
        recorded = AwsScanner(source, session_factory=recorder).scan()
        assert recorded.complete, recorded.errors
        minimal_calls = minimal_listing(url, REGIONS)
        scans: list[tuple[float, float]] = []
        bares: list[tuple[float, float]] = []
        result: ScanResult = recorded
        for _ in range(repeats):  # alternate, so load on a shared machine hits both alike
            with timed() as clock:
                result = AwsScanner(source).scan()
            scans.append((clock.wall, clock.cpu))
            with timed() as clock:
                minimal_listing(url, REGIONS)
            bares.append((clock.wall, clock.cpu))
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
    return {"resources": first.resources, "made": made, "build_s": build.wall, "calls": len(recorder.calls),
            "minimal_calls": minimal_calls, "threads": len({c.thread for c in recorder.calls}),
            "top_calls": operations.most_common(8),
            "scan_s": min(w for w, _ in scans), "scan_cpu_s": min(c for _, c in scans),
            "scan_median_s": statistics.median(w for w, _ in scans),
            "bare_s": min(w for w, _ in bares), "bare_cpu_s": min(c for _, c in bares),
            "bare_median_s": statistics.median(w for w, _ in bares),
            "commit_s": commit.wall, "label_changes": first.label_changes,
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
        emit_child_result(child_live(args.live_scale, args.repeats, args.db))


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
    print(f"first scan {rate:,.0f} resources/s wall, {first['resources'] / first['cpu']:,.0f}/s by CPU time "
          f"(target >= {TARGET_RATE:,}), peak RSS {first['peak_rss_mib']} MiB (target <= {TARGET_RSS_MIB}; "
          f"re-scan {again['peak_rss_mib']} MiB); load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    assert again["written"] == 0 and again["label_changes"] == 0 and again["history_rows_added"] == 0, again
    return rows


TARGETS = {"wall": 1.1, "cpu": 1.5, "calls": 2.0}


def live(args: argparse.Namespace) -> list[list[object]]:
    with workdir() as tmp:
        r = run_child(THIS, "--child", "live", "--db", str(tmp / "live.db"), "--live-scale", str(args.live_scale),
                      "--repeats", str(args.repeats))
    n = r["resources"]
    ratios = {"wall": r["scan_s"] / r["bare_s"], "cpu": r["scan_cpu_s"] / r["bare_cpu_s"],
              "calls": r["calls"] / r["minimal_calls"]}
    print(f"live estate: one account, {n:,} resources in moto ({r['made']}; built in {r['build_s']:.0f}s), "
          f"recovery_facts: false; {r['calls']} API calls on {r['threads']} threads; "
          f"busiest: {', '.join(f'{op} x{k}' for op, k in r['top_calls'])}")
    print(f"environments: {r['environments']}")
    print("scan / minimal boto3 listing: " + "; ".join(
        f"{what} {ratio:.2f}x (target <= {TARGETS[what]}x)" for what, ratio in ratios.items())
        + f"; wall medians {r['scan_median_s']:.2f}s / {r['bare_median_s']:.2f}s over {args.repeats} runs")
    assert r["rescan_written"] == 0 and r["rescan_label_changes"] == 0 and r["rescan_history_rows"] == 0, r
    peak = f"{r['peak_rss_mib']:.0f}"
    return [["live: minimal boto3 listing", f"{n:,}", f"{r['bare_s']:.2f}", f"{r['bare_cpu_s']:.2f}",
             f"{n / r['bare_s']:,.0f}", "", f"{r['minimal_calls']} calls"],
            ["live: AwsScanner.scan()", f"{n:,}", f"{r['scan_s']:.2f}", f"{r['scan_cpu_s']:.2f}",
             f"{n / r['scan_s']:,.0f}", "", f"{r['calls']} calls; " + ", ".join(
                 f"{what} {ratio:.2f}x" for what, ratio in ratios.items())],
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
    parser.add_argument("--live-scale", type=float, default=1.0,
                        help="size of the live account (1: ~5,000 resources; 0.1 for a quick run)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="live scans and minimal listings to time, alternately (the best of each is shown)")
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
