"""Normalizing AWS shapes at the edge: tags to one dict, ARNs built and read the AWS way.

>>> tag_dict([{"Key": "Name", "Value": "web"}, {"Key": "env", "Value": "prd"}])
{'Name': 'web', 'env': 'prd'}
>>> ec2_arn("aws", "us-east-1", "222222222222", "vpc", "vpc-1")
'arn:aws:ec2:us-east-1:222222222222:vpc/vpc-1'
>>> kind_of_arn("arn:aws:rds:us-east-1:222222222222:db:orders-db"), kind_of_arn("arn:aws:sqs:eu-west-1:2:jobs")
('rds:db', 'sqs:queue')
>>> merge_facts({"versioning": "Enabled", "unreadable": ["replication"]}, {"unreadable": ["object_lock"]})
{'versioning': 'Enabled', 'unreadable': ['object_lock', 'replication']}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

PROVIDER = "aws"

#: kinds the per-service listing owns: for these it is the truth, the tagging API only adds tags
LISTED_KINDS = frozenset({
    "ec2:instance", "ec2:vpc", "ec2:subnet", "ec2:security-group", "rds:db", "rds:cluster", "s3:bucket",
    "eks:cluster", "lambda:function", "dynamodb:table",
})
#: services whose ARNs carry no resource type
_TYPELESS = {"sqs": "queue", "sns": "topic", "s3": "bucket"}
_RESOURCE_SPLIT = re.compile(r"[/:]")


def tag_dict(tags: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None) -> dict[str, str]:
    """AWS ``[{Key, Value}]`` (or an already flat ``{key: value}``) -> ``dict[str, str]``."""
    if not tags:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t["Key"]): str(t.get("Value") or "") for t in tags}


def name_of(tags: Mapping[str, str], identifier: str) -> str:
    """The Name tag, else the identifier."""
    return tags.get("Name") or identifier


def partition_of(arn: str) -> str:
    return arn.split(":", 2)[1] if arn.startswith("arn:") else "aws"


def ec2_arn(partition: str, region: str, account: str, kind: str, resource_id: str) -> str:
    return f"arn:{partition}:ec2:{region}:{account}:{kind}/{resource_id}"


def s3_arn(partition: str, bucket: str) -> str:
    return f"arn:{partition}:s3:::{bucket}"


def dynamodb_arn(partition: str, region: str, account: str, table: str) -> str:
    return f"arn:{partition}:dynamodb:{region}:{account}:table/{table}"


def arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[2], parts[3], parts[4], parts[5]


def kind_of_arn(arn: str) -> str:
    """``service:type`` from an ARN (``arn:aws:ec2:...:volume/vol-1`` -> ``ec2:volume``)."""
    service, _, _, resource = arn_parts(arn)
    pieces = _RESOURCE_SPLIT.split(resource, maxsplit=1)
    if len(pieces) == 1:
        return f"{service}:{_TYPELESS.get(service, 'resource')}"
    return f"{service}:{pieces[0]}"


def identifier_of_arn(arn: str) -> str:
    """The last segment of an ARN's resource part, a readable name when nothing better is known."""
    return _RESOURCE_SPLIT.split(arn_parts(arn)[3])[-1]


def iso(moment: datetime | str | None) -> str | None:
    """An AWS timestamp as ISO-8601 UTC to the second (``2026-12-01T03:00:00Z``), the form facts are stored in."""
    if moment is None or isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_ref(snapshot_id: str, at: datetime | str | None, kind: str) -> dict[str, Any]:
    """A snapshot or backup as facts name it: ``{"id", "at", "kind": "automated"|"manual"}``."""
    return {"id": snapshot_id, "at": iso(at), "kind": kind}


def latest(refs: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest snapshot ref (ISO strings sort by time), None when there is none."""
    newest = max(refs, key=lambda ref: ref["at"] or "", default=None)
    return dict(newest) if newest is not None else None


def merge_facts(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra``'s keys; ``unreadable`` is the union, less any key that was read after all."""
    merged = {**base, **extra}
    unreadable = set(base.get("unreadable", ())) | set(extra.get("unreadable", ()))
    merged.pop("unreadable", None)
    unreadable -= set(merged)
    if unreadable:
        merged["unreadable"] = sorted(unreadable)
    return merged
