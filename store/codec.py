"""How values are written in the store: times as ISO text, evidence, tags and aliases as compact JSON, the digest.

Encoders are built once: ``json.dumps`` with options builds a new encoder per call, which the scan path
(a few encodes per resource, a million resources) cannot afford.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from envlabel.model import Evidence, Resource

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(moment: datetime) -> str:
    # isoformat, not strftime(TS_FORMAT): same text, and both sit on the label lookup's hot path
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(text: str | None) -> datetime | None:
    # fromisoformat reads TS_FORMAT ("...Z") ~25x faster than strptime
    return datetime.fromisoformat(text) if text else None


# Encoders built once: json.dumps with options builds a new encoder per call, which the scan path
# (a few encodes per resource, a million resources) cannot afford.
_compact = json.JSONEncoder(separators=(",", ":")).encode
_sorted_compact = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_json_str = json.encoder.encode_basestring_ascii  # a JSON string literal, as json.dumps writes it


@functools.lru_cache(maxsize=16384)
def _evidence_item(e: Evidence) -> str:
    """One evidence entry as JSON. Cached: an ancestor's evidence repeats in every label below it."""
    return f"[{_json_str(e.signal)},{_json_str(e.environment)},{_json_str(e.source)},{_json_str(e.detail)}]"


def encode_evidence(evidence: Sequence[Evidence]) -> str:
    """The same text as compact ``json.dumps([[signal, environment, source, detail], ...])``."""
    return "[" + ",".join([_evidence_item(e) for e in evidence]) + "]"


def decode_evidence(text: str) -> tuple[Evidence, ...]:
    return tuple(Evidence(*row) for row in json.loads(text))


def encode_tags(tags: Mapping[str, str]) -> str:
    if not tags:
        return "{}"
    return _sorted_compact(tags if type(tags) is dict else dict(tags))


def encode_aliases(aliases: Sequence[str]) -> str:
    return _compact(list(aliases)) if aliases else "[]"


def decode_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {} if text == "{}" else json.loads(text)
    return tags


def digest(resource: Resource, tags_json: str | None = None) -> str:
    """A fingerprint of everything labeling reads, so an unchanged resource is not rewritten.

    ``tags_json`` is the resource's tags as stored (:func:`encode_tags`), when the caller has it already.
    """
    # repr of a tuple of str/None/bool is unambiguous and self-delimiting, and cheaper than JSON
    head = repr((resource.provider, resource.kind, resource.name, resource.parent, resource.scope,
                 resource.region, resource.path, resource.name_signal, resource.declared, resource.aliases))
    body = head + (tags_json if tags_json is not None else encode_tags(resource.tags))
    return hashlib.blake2b(body.encode(), digest_size=12).hexdigest()

