"""GCP scan benchmark: the GcpScanner over the real clients against the fake Resource Manager and Cloud Asset API.

    .venv/bin/python bench/gcp_scan.py                      # 40 folders x 50 projects, no assets, 10 ms a call
    .venv/bin/python bench/gcp_scan.py --folders 400 --projects 5     # a folder-heavy organization
    .venv/bin/python bench/gcp_scan.py --folders 10 --projects 10 --assets 50000   # resources below projects

Every call to the fake is held back by --latency-ms, standing in for the round trip to
cloudresourcemanager.googleapis.com / cloudasset.googleapis.com, so the figures show what the
scanner's call pattern costs (one paged list per folder and kind, one tag read per folder and
project, one lookup per distinct tag value, one search per asset type at 500 results a page) and
what its thread pools save. The scan runs in a child process, so its peak RSS is the scanner's
own (the fake and its estate stay in this process). One row per worker count.
"""

from __future__ import annotations

import argparse
import sys
import time

from _util import emit_child_result, machine, run_child, table, timed

from envlabel.config import DEFAULT_GCP_ASSET_TYPES, GcpSource
from envlabel.discovery.gcp import GcpScanner
from envlabel.service.demo.fakes.gcp_crm import FakeCrm, start_fake_gcp

ORG_ID = "900000000001"


def build(folders: int, projects: int, assets: int) -> FakeCrm:
    crm = FakeCrm()
    org = crm.add_organization(ORG_ID, "bench.example")
    key = crm.add_tag_key(org, "environment")
    values = [crm.add_tag_value(key, v) for v in ("Production", "Staging", "Development")]
    project_ids = []
    for i in range(folders):
        folder = crm.add_folder(org, f"team-{i}")
        crm.bind(folder, values[i % 3])
        for j in range(projects):
            project = crm.add_project(folder, f"p-{i}-{j}", labels={"env": "dev", "team": f"team-{i}"})
            project_ids.append(f"p-{i}-{j}")
            if j % 5 == 0:
                crm.bind(project, values[j % 3])
    add_assets(crm, project_ids, assets)
    return crm


def add_assets(crm: FakeCrm, project_ids: list[str], count: int) -> None:
    """``count`` resources spread evenly over the default asset types and the projects, a third labeled."""
    types = DEFAULT_GCP_ASSET_TYPES
    for n in range(count):
        asset_type, project = types[n % len(types)], project_ids[(n // len(types)) % len(project_ids)]
        collection = asset_type.rsplit("/", 1)[1].lower() + "s"
        labels = {"env": ("prod", "staging", "dev")[n % 3], "team": f"t{n % 17}"} if n % 3 == 0 else {}
        crm.assets.add(asset_type, project, f"projects/{project}/locations/us-central1/{collection}/r{n}", labels,
                       location="us-central1")


def child(url: str, workers: int) -> None:
    """The measured part: one scan, its figures and this process's peak RSS on the last stdout line."""
    source = GcpSource(name="bench", type="gcp", organization=ORG_ID, api_endpoint=url)
    with timed() as clock:
        result = GcpScanner(source, max_workers=workers).scan()
    assert result.complete, result.errors
    emit_child_result({"resources": len(result.resources), "seconds": clock.wall, "cpu": clock.cpu})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", type=int, default=40)
    parser.add_argument("--projects", type=int, default=50, help="projects per folder")
    parser.add_argument("--assets", type=int, default=0, help="resources below the projects (Cloud Asset)")
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--workers", default="1,8", help="worker counts to compare")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, int(args.workers))
        return
    started = time.perf_counter()
    crm = build(args.folders, args.projects, args.assets)
    print(f"built the estate in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    crm.latency_s = args.latency_ms / 1000
    url, server = start_fake_gcp(crm)
    rows = []
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            before = len(crm.requests)
            figures = run_child(__file__, "--child", url, "--workers", str(workers))
            calls = len(crm.requests) - before
            searches = sum(1 for r in crm.requests[before:] if r.path.endswith(":searchAllResources"))
            rows.append((workers, figures["resources"], calls, searches, f"{figures['seconds']:.2f}",
                         f"{figures['resources'] / figures['seconds']:,.0f}", f"{figures['peak_rss_mib']:.0f}"))
    finally:
        server.stop()
    print(f"GCP scan: {args.folders} folders x {args.projects} projects, {args.assets:,} assets, "
          f"{args.latency_ms:g} ms a call; {machine()}")
    print(table(rows, ("workers", "resources", "calls", "searches", "seconds", "resources/s", "peak RSS MiB")))


if __name__ == "__main__":
    main()
