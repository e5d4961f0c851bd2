"""The live AWS scan makes the fewest calls the data allows (issue 18 item 16).

S3 is the case: buckets take their region from the listing and their tags from the tagging index, so a
scan's S3 calls do not grow with the number of buckets; per-bucket calls happen only where the index or
the filtered listing cannot answer. Every call is made to a real moto server over HTTP and recorded by a
botocore hook; a refused call is a genuine AccessDenied from the loopback proxy in tests/aws_denied.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from envlabel.config import AwsSource, config_from_dict
from envlabel.discovery.aws import AwsScanner, Credentials, SessionFactory, make_sessions
from envlabel.model import Resource, ScanResult
from envlabel.service.core.pipeline import run_source
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.aws_denied import DeniedProxy, Rule, SignedRequest

ACCOUNT = "123456789012"  # moto's default account: the one the plain test credentials act in
REGIONS = ("us-east-1", "eu-west-1")
PER_BUCKET = ("GetBucketLocation", "GetBucketTagging")


@dataclass(frozen=True)
class Call:
    region: str
    operation: str
    params: tuple[tuple[str, str], ...]


def recording(calls: list[Call]) -> SessionFactory:
    """Real sessions whose every call (with its parameters) is recorded by botocore's own event hook."""
    base = make_sessions()

    def make(credentials: Credentials | None) -> Any:
        session = base(credentials)

        def record(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            calls.append(Call(context.get("client_region") or "", model.name,
                              tuple(sorted((k, repr(v)) for k, v in params.items()))))

        session.events.register("provide-client-params", record)
        return session

    return make


def make_buckets(endpoint_url: str, prefix: str, count: int) -> dict[str, tuple[str, dict[str, str]]]:
    """``count`` buckets over both regions: bucket name -> (region, tags). Every third has no tags; every
    fifth had tags and lost them all (the index may keep listing such a bucket with an empty tag set)."""
    made: dict[str, tuple[str, dict[str, str]]] = {}
    for n in range(count):
        region = REGIONS[n % 2]
        name = f"{prefix}-{n}-{region}"
        s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
        s3.create_bucket(Bucket=name, **({} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}))
        tags = {} if n % 3 == 0 else {"Environment": ("production", "sandbox")[n // 2 % 2], "team": f"t{n}"}
        if tags or n % 5 == 0:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "owner", "Value": "x"}]})
            s3.delete_bucket_tagging(Bucket=name)
        if tags:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        made[name] = (region, tags)
    return made


def source(endpoint_url: str) -> AwsSource:
    return AwsSource(name="aws", type="aws", endpoint_url=endpoint_url, regions=list(REGIONS), organization=False,
                     recovery_facts=False)


def scan(endpoint_url: str) -> tuple[ScanResult, list[Call]]:
    calls: list[Call] = []
    result = AwsScanner(source(endpoint_url), session_factory=recording(calls)).scan()
    return result, calls


def buckets_of(result: ScanResult) -> dict[str, Resource]:
    """Bucket name -> record (arn:aws:s3:::NAME)."""
    return {r.id.rsplit(":", 1)[1]: r for r in result.resources if r.kind == "s3:bucket"}


def s3_calls(calls: list[Call]) -> Counter[str]:
    """S3 and S3-filtered tagging calls by operation (the regional scans' own GetResources left out)."""
    return Counter(c.operation for c in calls if c.operation in ("ListBuckets", *PER_BUCKET)
                   or (c.operation == "GetResources" and "ResourceTypeFilters" in dict(c.params)))


def test_bucket_regions_and_tags_come_from_the_listing_and_the_index(moto: str) -> None:
    made = make_buckets(moto, "idx", 12)
    result, calls = scan(moto)
    assert result.errors == [] and result.complete
    buckets = buckets_of(result)
    assert {n: (b.region, b.tags) for n, b in buckets.items()} == made  # untagged: no tags, and still listed
    assert all(b.scope == f"{ACCOUNT}/global" and b.parent == ACCOUNT for b in buckets.values())
    counted = s3_calls(calls)
    assert not any(counted[op] for op in PER_BUCKET), counted
    # one listing, one filtered listing per region (moto's answer has no BucketRegion), one index per region
    assert counted == Counter({"ListBuckets": 1 + len(REGIONS), "GetResources": len(REGIONS)}), counted


def test_s3_calls_do_not_grow_with_the_number_of_buckets(moto: str) -> None:
    make_buckets(moto, "few", 4)
    _, few = scan(moto)
    make_buckets(moto, "many", 40)
    result, many = scan(moto)
    assert len(buckets_of(result)) == 44
    assert s3_calls(many) == s3_calls(few), (s3_calls(few), s3_calls(many))


def test_the_cheaper_of_the_index_and_the_bucket_is_asked(moto: str) -> None:
    """A lone bucket in a region is read directly (one call either way); two buckets place themselves by
    name cheaper than a filtered listing per region does."""
    made = make_buckets(moto, "lone", 3)  # two in us-east-1, one in eu-west-1
    result, calls = scan(moto)
    assert {n: (b.region, b.tags) for n, b in buckets_of(result).items()} == made
    assert s3_calls(calls) == Counter({"ListBuckets": 1 + len(REGIONS), "GetResources": 1, "GetBucketTagging": 1})
    [lone] = [n for n, (region, _) in made.items() if region == "eu-west-1"]
    assert [dict(c.params)["Bucket"] for c in calls if c.operation == "GetBucketTagging"] == [repr(lone)]

    boto3.client("s3", endpoint_url=moto).delete_bucket(Bucket=lone)
    made.pop(lone)
    result, calls = scan(moto)
    assert {n: (b.region, b.tags) for n, b in buckets_of(result).items()} == made
    assert s3_calls(calls) == Counter({"ListBuckets": 1, "GetBucketLocation": 2, "GetResources": 1})


def deny_s3_index(region: str) -> Rule:
    """tag:GetResources filtered to S3 in ``region`` (the region's own scan, unfiltered, still answers)."""
    return lambda r: r.region == region and r.operation == "GetResources" and b"ResourceTypeFilters" in r.body


def deny_region_filter(request: SignedRequest) -> bool:
    """ListBuckets filtered by region, as an S3-compatible endpoint that rejects the parameter would."""
    return request.service == "s3" and "bucket-region=" in request.path


def test_a_region_whose_index_is_denied_falls_back_per_bucket_there_only(moto: str, tmp_path: Path) -> None:
    made = make_buckets(moto, "deny", 8)
    with DeniedProxy(moto, deny_s3_index("eu-west-1")) as proxy:
        result, calls = scan(proxy.url)
        assert proxy.denied, "the tagging index in eu-west-1 was never asked"
    assert result.errors == [] and result.complete
    buckets = buckets_of(result)
    assert {n: (b.region, b.tags) for n, b in buckets.items()} == made
    tagging_reads = sorted(dict(c.params)["Bucket"].strip("'") for c in calls if c.operation == "GetBucketTagging")
    assert tagging_reads == sorted(n for n, (region, _) in made.items() if region == "eu-west-1")
    # the tags the fallback read decide the labels (the account has no signal: without them, unknown)
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        {"name": "aws", "type": "aws", "endpoint_url": proxy.url, "regions": list(REGIONS), "organization": False,
         "recovery_facts": False}]})
    store = open_store(config.store)
    run_source(config, store, config.sources[0], scan=lambda _: result)
    query = Query(config, store)
    eu = {n: tags for n, (region, tags) in made.items() if region == "eu-west-1"}
    assert {n: query.label(f"arn:aws:s3:::{n}")["environment"] for n in eu} == {
        n: tags.get("Environment", "unknown") for n, tags in eu.items()}
    assert {"production", "sandbox", "unknown"} <= {query.label(f"arn:aws:s3:::{n}")["environment"] for n in eu}


def test_an_endpoint_refusing_the_region_filter_costs_one_location_call_per_bucket(moto: str) -> None:
    made = make_buckets(moto, "nofilter", 6)
    with DeniedProxy(moto, deny_region_filter) as proxy:
        result, calls = scan(proxy.url)
        assert proxy.denied
    assert {n: (b.region, b.tags) for n, b in buckets_of(result).items()} == made
    assert Counter(c.operation for c in calls)["GetBucketLocation"] == len(made)
    assert Counter(c.operation for c in calls)["GetBucketTagging"] == 0


def test_a_bucket_neither_the_index_nor_its_own_tagging_answers_for_is_skipped_with_its_error(moto: str) -> None:
    """Never emitted tagless: a production tag nobody could read must not become the account's environment."""
    made = make_buckets(moto, "hidden", 4)
    hidden = next(n for n, (_, tags) in made.items() if tags.get("Environment") == "production")

    def refuse(request: SignedRequest) -> bool:
        return deny_s3_index(made[hidden][0])(request) or (
            request.service == "s3" and request.path.startswith(f"/{hidden}") and "tagging" in request.path)

    with DeniedProxy(moto, refuse) as proxy:
        result, _ = scan(proxy.url)
    buckets = buckets_of(result)
    assert hidden not in buckets
    assert {n: (b.region, b.tags) for n, b in buckets.items()} == {n: v for n, v in made.items() if n != hidden}
    [error] = result.errors
    assert error.scope == f"{ACCOUNT}/global" and hidden in error.message and "s3:GetBucketTagging" in error.hint
