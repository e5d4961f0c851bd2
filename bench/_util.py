"""Shared benchmark helpers: timing, percentiles, peak RSS of a child, and a synthetic AWS-shaped estate.

Benchmarks print figures; they are not tests. Scripts import this module as ``_util``
(``python bench/x.py`` puts bench/ on sys.path). The measured part of a benchmark runs
in a child process (:func:`run_child`) so its peak RSS is its own, not the parent's.

The synthetic estate is generated lazily: a million :class:`Resource` records never
exist at once, so a benchmark measures the pipeline, not the test data.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlabel.model import Resource

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


# -- measuring -------------------------------------------------------------------------------------
@dataclass
class Clock:
    """Wall and CPU seconds of a ``with timed() as clock:`` block."""

    wall: float = 0.0
    cpu: float = 0.0
    _start: tuple[float, float] = field(default=(0.0, 0.0), repr=False)


@contextmanager
def timed() -> Iterator[Clock]:
    clock = Clock(_start=(time.perf_counter(), time.process_time()))
    try:
        yield clock
    finally:
        clock.wall = time.perf_counter() - clock._start[0]
        clock.cpu = time.process_time() - clock._start[1]


def percentiles(samples: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> dict[float, float]:
    """Nearest-rank percentiles of ``samples`` (any unit)."""
    ordered = sorted(samples)
    if not ordered:
        return {p: float("nan") for p in points}
    return {p: ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] for p in points}


def mean(samples: Sequence[float]) -> float:
    return statistics.fmean(samples) if samples else float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit_child_result(result: dict[str, Any]) -> None:
    """The last stdout line of a child run: its figures plus its own peak RSS."""
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result), flush=True)


def run_child(script: str | Path, *args: str) -> dict[str, Any]:
    """Run ``python SCRIPT ARGS`` and return the JSON dict it printed last (see :func:`emit_child_result`)."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{script} {' '.join(args)} printed no result:\n{proc.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    """A scratch directory under bench/out/ (gitignored), removed afterwards unless ``keep``."""
    OUT.mkdir(parents=True, exist_ok=True)
    if keep:
        path = OUT / "work"
        path.mkdir(exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        yield Path(tmp)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain aligned text table (also valid Markdown)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}"


# -- the synthetic estate --------------------------------------------------------------------------
MANAGEMENT = "111111111111"
ORG = "o-bench00001"
REGIONS = ("us-east-1", "eu-west-1")

#: (OU path, environment the OU name declares or None); accounts are spread over these in order.
OUS: tuple[tuple[str, str | None], ...] = (
    ("/Root/Production", "production"), ("/Root/Production/EU", "production"),
    ("/Root/Production/US", "production"), ("/Root/Staging", "staging"), ("/Root/Staging/UAT", "staging"),
    ("/Root/Sandbox", "sandbox"), ("/Root/Sandbox/Developers", "sandbox"), ("/Root/Shared", None),
    ("/Root/Shared/Security", None), ("/Root/Teams", None), ("/Root/Teams/payments", None),
    ("/Root/Teams/search", None),
)

# Environment tags as people really write them; the first of each list is clean.
_MESSY: dict[str, tuple[dict[str, str], ...]] = {
    "production": ({"Environment": "production"}, {"env": "prd"}, {"Environment": "Prod-EU"},
                   {"ENV": "PROD"}, {"stage": "live"}, {"deployment.environment.name": "prod"}),
    "staging": ({"Environment": "staging"}, {"Stage": "UAT"}, {"env": "stg"}, {"Environment": "pre-prod"}),
    "sandbox": ({"Environment": "sandbox"}, {"ENV": "dev"}, {"env": "test"}, {"Environment": "qa"}),
    "none": ({"Environment": "nonprod"}, {"env": "shared"}, {}),
}
_OTHER_TAGS = ({"Owner": "team-a", "CostCenter": "1001"}, {"owner": "payments"}, {"Project": "orders"},
               {"Name": "x", "aws:cloudformation:stack-name": "core"}, {})
# leaf kinds: (kind, share in 100, attached to a VPC)
_KINDS = (("ec2:instance", 40, True), ("ec2:subnet", 10, True), ("ec2:security-group", 15, True),
          ("rds:db", 5, True), ("lambda:function", 10, False), ("s3:bucket", 5, False),
          ("dynamodb:table", 10, False), ("eks:cluster", 5, False))
_KIND_WHEEL = tuple(k for k in _KINDS for _ in range(k[1]))


@dataclass(frozen=True)
class Estate:
    """A synthetic estate's shape; iterate :meth:`resources` to generate it lazily."""

    accounts: int = 1000
    per_account: int = 1000  # the account itself, its VPCs and its leaf resources
    vpcs_per_region: int = 2
    conflict_every: int = 50  # one leaf in this many carries a tag that disagrees with its account
    source: str = "bench"

    @property
    def size(self) -> int:
        return 1 + len(OUS) + self.accounts * self.per_account

    def account_id(self, i: int) -> str:
        return f"{200000000000 + i}"

    def account_environment(self, i: int) -> str | None:
        """The environment an account's OU declares (None for Shared/Teams accounts)."""
        return OUS[i % len(OUS)][1]

    def resources(self) -> Iterator[Resource]:
        root = f"arn:aws:organizations::{MANAGEMENT}:root/{ORG}/r-b001"
        yield Resource(root, "aws", "aws:root", "Root", None, {}, "organization", path="/Root")
        ou_ids: dict[str, str] = {"/Root": root}
        for n, (path, _env) in enumerate(OUS):
            ou_id = f"arn:aws:organizations::{MANAGEMENT}:ou/{ORG}/ou-b001-{n:08d}"
            parent_path, _, name = path.rpartition("/")
            tags = {"Environment": "Production"} if path == "/Root/Production/EU" else {}
            yield Resource(ou_id, "aws", "aws:ou", name, ou_ids[parent_path], tags, "organization",
                           name_signal=True, path=path)
            ou_ids[path] = ou_id
        for i in range(self.accounts):
            yield from self._account(i, ou_ids[OUS[i % len(OUS)][0]])

    def _account(self, i: int, ou_id: str) -> Iterator[Resource]:
        account = self.account_id(i)
        env = self.account_environment(i)
        pick = i * 2654435761  # a cheap deterministic spread instead of random()
        # Every third account in a signalled OU also tags itself, messily; Shared/Teams accounts
        # get their signal (or none) from tags only.
        if env is None:
            account_tags = dict(_MESSY[("production", "staging", "sandbox", "none")[i % 4]][pick % 3])
        elif i % 3 == 0:
            variants = _MESSY[env]
            account_tags = dict(variants[pick % len(variants)])
        else:
            account_tags = {}
        account_tags.update(_OTHER_TAGS[i % len(_OTHER_TAGS)])
        team = ("orders", "search", "payments", "identity")[i % 4]
        name = f"{team}-{(env or 'shared')[:4]}-{i:04d}"
        yield Resource(account, "aws", "aws:account", name, ou_id, account_tags, "organization",
                       aliases=(f"arn:aws:organizations::{MANAGEMENT}:account/{ORG}/{account}",))
        vpcs: list[tuple[str, str]] = []
        for region in REGIONS:
            for v in range(self.vpcs_per_region):
                vpc = f"arn:aws:ec2:{region}:{account}:vpc/vpc-{i:08x}{v:04x}{len(vpcs):05x}"
                vpcs.append((vpc, region))
                tags = {"Name": f"{team}-{region}-{v}"} if v else {"Name": f"{team}-main", "env": "prod"
                                                                     if env == "production" else "dev"}
                yield Resource(vpc, "aws", "ec2:vpc", tags["Name"], account, tags, f"{account}/{region}",
                               region=region)
        leaf_env = env or "production"
        variants = _MESSY[leaf_env]
        disagree = _MESSY["sandbox" if leaf_env != "sandbox" else "production"]
        for n in range(self.per_account - 1 - len(vpcs)):
            h = (pick + n * 40503) & 0xFFFFFFFF
            kind, _share, in_vpc = _KIND_WHEEL[h % 100]
            vpc, region = vpcs[n % len(vpcs)]
            leaf_name = f"{team}-{kind.partition(':')[2]}-{n}"
            arn = _arn(kind, region, account, leaf_name, i, n)
            if n % self.conflict_every == 7:
                tags = {**disagree[h % len(disagree)], "Name": leaf_name}
            elif h % 5 < 3:  # 60% carry an environment tag of their own
                tags = {**variants[h % len(variants)], **_OTHER_TAGS[h % len(_OTHER_TAGS)]}
            else:
                tags = dict(_OTHER_TAGS[h % len(_OTHER_TAGS)])
            scope = f"{account}/global" if kind == "s3:bucket" else f"{account}/{region}"
            yield Resource(arn, "aws", kind, leaf_name, vpc if in_vpc else account, tags, scope,
                           region="" if kind == "s3:bucket" else region)


def _arn(kind: str, region: str, account: str, name: str, i: int, n: int) -> str:
    suffix = f"{i:06x}{n:011x}"
    if kind == "ec2:instance":
        return f"arn:aws:ec2:{region}:{account}:instance/i-{suffix}"
    if kind == "ec2:subnet":
        return f"arn:aws:ec2:{region}:{account}:subnet/subnet-{suffix}"
    if kind == "ec2:security-group":
        return f"arn:aws:ec2:{region}:{account}:security-group/sg-{suffix}"
    if kind == "rds:db":
        return f"arn:aws:rds:{region}:{account}:db:{name}"
    if kind == "lambda:function":
        return f"arn:aws:lambda:{region}:{account}:function:{name}"
    if kind == "s3:bucket":
        return f"arn:aws:s3:::{name}-{account}"
    if kind == "dynamodb:table":
        return f"arn:aws:dynamodb:{region}:{account}:table/{name}"
    return f"arn:aws:eks:{region}:{account}:cluster/{name}"


# -- a live estate in moto -------------------------------------------------------------------------
def start_moto() -> tuple[str, subprocess.Popen[bytes]]:
    """A moto server subprocess on a free loopback port; returns (url, process). Stop it by its process."""
    import shutil
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    # without moto's catalogue of public AMIs, whose snapshots it files under the caller's account (see
    # tests/conftest.py moto_environment): real AWS lists only the account's own for DescribeSnapshots OwnerIds=self
    amis = Path(__file__).resolve().parents[1] / "tests" / "moto-no-amis.json"
    process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                               env={**os.environ, "MOTO_AMIS_PATH": str(amis)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return url, process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("moto_server did not start within 30s")


def build_moto_estate(endpoint_url: str, accounts: int = 12, instances_per_region: int = 200) -> list[str]:
    """An Organization of ``accounts`` member accounts in production/staging/sandbox OUs, each with a VPC,
    subnets, a security group and ``instances_per_region`` messily tagged instances in two regions, a
    bucket and a table. Returns the member account ids. (moto adds default VPCs, subnets and groups.)"""
    from envlabel.service.demo.estate import REGIONS as LIVE_REGIONS
    from envlabel.service.demo.estate import AwsEstate, aws_tags

    estate = AwsEstate(endpoint_url)
    org = estate.client("organizations")
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    envs = ("production", "staging", "sandbox")
    ous = {env: org.create_organizational_unit(ParentId=root, Name=env.title())["OrganizationalUnit"]["Id"]
           for env in envs}
    members: list[str] = []
    for i in range(accounts):
        env = envs[i % 3]
        status = org.create_account(Email=f"bench-{i}@example.com", AccountName=f"bench-{env}-{i}",
                                    Tags=aws_tags(_MESSY[env][i % len(_MESSY[env])]))["CreateAccountStatus"]
        account = status["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ous[env])
        members.append(account)
        for region in LIVE_REGIONS:
            _vpc, subnets = estate.vpc(account, region, f"bench-{i}")
            ec2 = estate.client("ec2", account, region)
            for n, start in enumerate(range(0, instances_per_region, 50)):
                count = min(50, instances_per_region - start)
                tags = {"Name": f"worker-{n}", **_MESSY[env if n % 4 else "none"][n % 3]}
                ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, InstanceType="t3.micro",
                                  SubnetId=subnets[n % 2],
                                  TagSpecifications=[{"ResourceType": "instance", "Tags": aws_tags(tags)}])
            estate.client("dynamodb", account, region).create_table(
                TableName=f"bench-{i}", BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        estate.client("s3", account).create_bucket(Bucket=f"bench-{i}-{account}")
    return members
