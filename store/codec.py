"""How values are written in the store: times as ISO text, evidence, tags, aliases and facts as compact JSON, the
digest.

Encoders are built once: ``json.dumps`` with options builds a new encoder per call, which the scan path
(a few encodes per resource, a million resources) cannot afford.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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


def evidence_item(e: Evidence) -> str:
    """One evidence entry as JSON, not cached: a resource's own evidence (its id in it) is met once."""
    return f"[{_json_str(e.signal)},{_json_str(e.environment)},{_json_str(e.source)},{_json_str(e.detail)}]"


def encode_evidence(evidence: Sequence[Evidence]) -> str:
    """The same text as compact ``json.dumps([[signal, environment, source, detail], ...])``."""
    return "[" + ",".join([_evidence_item(e) for e in evidence]) + "]"


def decode_evidence(text: str) -> tuple[Evidence, ...]:
    return tuple(Evidence(*row) for row in json.loads(text))


#: tag sets as stored, by their items: tag sets repeat across an estate (cleared when full)
_TAGS_MEMO: dict[tuple[tuple[str, str], ...], str] = {}
TAGS_MEMO_SIZE = 100_000


def encode_tags(tags: Mapping[str, str]) -> str:
    if not tags:
        return "{}"
    items = tuple(tags.items())
    try:
        text = _TAGS_MEMO.get(items)
    except TypeError:  # a value that is not text (a scanner's bug): encoded as it is, not remembered
        return _sorted_compact(dict(tags))
    if text is None:
        text = _sorted_compact(tags if type(tags) is dict else dict(tags))
        if len(_TAGS_MEMO) >= TAGS_MEMO_SIZE:
            _TAGS_MEMO.clear()
        _TAGS_MEMO[items] = text
    return text


def encode_aliases(aliases: Sequence[str]) -> str:
    return _compact(list(aliases)) if aliases else "[]"


def decode_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {} if text == "{}" else json.loads(text)
    return tags


def encode_facts(facts: Mapping[str, Any]) -> str:
    """A resource's recovery facts as stored: compact JSON, keys sorted, so equal facts are equal text."""
    if not facts:
        return "{}"
    try:
        return _sorted_compact(facts if type(facts) is dict else dict(facts))
    except (TypeError, ValueError) as exc:  # a scanner's bug: say which key cannot be stored
        raise ValueError(f"recovery facts must be JSON (str, number, bool, null, lists and objects): {exc}; "
                         f"got {dict(facts)!r}") from None


def decode_facts(text: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {} if not text or text == "{}" else json.loads(text)
    return facts


def digest(resource: Resource, tags_json: str | None = None, facts_json: str | None = None) -> str:
    """A fingerprint of everything stored of a resource (what labeling reads and its recovery facts), so an
    unchanged resource is not rewritten and a changed fact is.

    ``tags_json`` and ``facts_json`` are the resource's tags and facts as stored (:func:`encode_tags`,
    :func:`encode_facts`), when the caller has them already. A resource without facts has the digest it had
    before facts were stored, so an upgrade does not rewrite every such resource.
    """
    # repr of a tuple of str/None/bool is unambiguous and self-delimiting, and cheaper than JSON
    head = repr((resource.provider, resource.kind, resource.name, resource.parent, resource.scope,
                 resource.region, resource.path, resource.name_signal, resource.declared, resource.aliases))
    body = head + (tags_json if tags_json is not None else encode_tags(resource.tags))
    if resource.facts:  # tags JSON is self-delimiting: the facts' text after it is unambiguous
        body += facts_json if facts_json is not None else encode_facts(resource.facts)
    return hashlib.blake2b(body.encode(), digest_size=12).hexdigest()

