"""GCP scan benchmark: the GcpScanner over the real client against the fake Resource Manager.

    .venv/bin/python bench/gcp_scan.py                      # 40 folders x 50 projects, 10 ms a call
    .venv/bin/python bench/gcp_scan.py --folders 400 --projects 5     # a folder-heavy organization

Every call to the fake is held back by --latency-ms, standing in for the round trip to
cloudresourcemanager.googleapis.com, so the figures show what the scanner's call pattern
costs (one paged list per folder and kind, one tag read per folder and project, one lookup
per distinct tag value) and what listing each level of folders and reading tags on thread
pools saves. One row per worker count; the estate and its answers are the same each time.
"""

from __future__ import annotations

import argparse

from _util import machine, table, timed

from envlabel.config import GcpSource
from envlabel.discovery.gcp import GcpScanner
from envlabel.service.demo.fakes.gcp_crm import FakeCrm, start_fake_gcp

ORG_ID = "900000000001"


def build(folders: int, projects: int) -> FakeCrm:
    crm = FakeCrm()
    org = crm.add_organization(ORG_ID, "bench.example")
    key = crm.add_tag_key(org, "environment")
    values = [crm.add_tag_value(key, v) for v in ("Production", "Staging", "Development")]
    for i in range(folders):
        folder = crm.add_folder(org, f"team-{i}")
        crm.bind(folder, values[i % 3])
        for j in range(projects):
            project = crm.add_project(folder, f"p-{i}-{j}", labels={"env": "dev", "team": f"team-{i}"})
            if j % 5 == 0:
                crm.bind(project, values[j % 3])
    return crm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", type=int, default=40)
    parser.add_argument("--projects", type=int, default=50, help="projects per folder")
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--workers", default="1,8", help="worker counts to compare")
    args = parser.parse_args()
    crm = build(args.folders, args.projects)
    crm.latency_s = args.latency_ms / 1000
    url, server = start_fake_gcp(crm)
    source = GcpSource(name="bench", type="gcp", organization=ORG_ID, api_endpoint=url)
    rows = []
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            before = len(crm.requests)
            with timed() as clock:
                result = GcpScanner(source, max_workers=workers).scan()
            assert result.complete, result.errors
            calls = len(crm.requests) - before
            rows.append((workers, len(result.resources), calls, f"{clock.wall:.2f}",
                         f"{len(result.resources) / clock.wall:,.0f}"))
    finally:
        server.stop()
    print(f"GCP scan: {args.folders} folders x {args.projects} projects, {args.latency_ms:g} ms a call; {machine()}")
    print(table(rows, ("workers", "resources", "calls", "seconds", "resources/s")))


if __name__ == "__main__":
    main()
