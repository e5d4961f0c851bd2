"""Why a label is what it is: the evidence chain, container by container up the parents.

The label JSON lists the signals that decided; a reader who sees ``unknown`` (treated as production) or a
label decided three containers up also needs the containers that said nothing, and the tags that were seen
but could not be read (``Environment=nonprod`` names no environment). That is ``path``: the target first,
then each parent up to the root, each with its own signals or none. It costs one store read per container,
so only the explaining faces ask for it (``envlabel get``, ``GET /v1/label?explain=true``), never the hot path.
"""

from __future__ import annotations

from datetime import datetime

from envlabel.labelers.resolve import signals_of
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Override, Resource
from envlabel.records import LabelRecord, PathNodeRecord
from envlabel.service.core.clock import utcnow
from envlabel.service.core.query import Query
from envlabel.targets import parse_target

#: containers a path lists at most (a parent cycle or a runaway tree stops here)
MAX_DEPTH = 64


def explain(query: Query, raw_target: str, now: datetime | None = None) -> LabelRecord:
    """The label JSON of ``raw_target`` with its ``path`` (raises TargetError if malformed)."""
    now = now or utcnow()
    body = query.label(raw_target, now)
    body["path"] = evidence_path(query, body.get("id") or parse_target(raw_target).id, now)
    return body


def evidence_path(query: Query, target_id: str, now: datetime) -> list[PathNodeRecord]:
    """The target's node, then each parent's, nearest first; empty for a target the store never saw."""
    overrides = {t: o for t, o in query.store.overrides().items() if o.active(now)}
    path: list[PathNodeRecord] = []
    hidden = False
    node_id: str | None = target_id
    seen: set[str] = set()
    while node_id is not None and node_id not in seen and len(path) < MAX_DEPTH:
        seen.add(node_id)
        stored = query.store.get(node_id)
        if stored is None and not path:
            return []  # never seen: there is nothing to walk
        resource = stored.resource if stored is not None else None
        node = path_node(query.taxonomy, node_id, resource, overrides.get(node_id), hidden)
        path.append(node)
        hidden = hidden or node_id in overrides
        node_id = resource.parent if resource is not None else None
    return path


def path_node(taxonomy: Taxonomy, node_id: str, resource: Resource | None, override: Override | None,
              hidden: bool) -> PathNodeRecord:
    """One node of the path: what ``resource`` (None: a parent never observed) says about itself."""
    if resource is None:
        own = signals_of(Resource(node_id, "", "", ""), taxonomy, override)
    else:
        own = signals_of(resource, taxonomy, override)
    override_evidence = own.override_evidence()
    deciding = (override_evidence,) if override_evidence is not None else own.tags
    evidence = [*deciding, *own.names]
    unread = [f"{key}={value}" for key, value, match in taxonomy.environment_tags(resource.tags if resource else {})
              if match.environment is None]
    return {
        "id": node_id, "kind": resource.kind if resource else None, "name": resource.name if resource else None,
        "found": resource is not None,
        "environment": taxonomy.most_restrictive(e.environment for e in deciding) if deciding else None,
        "signals": [e.as_dict() for e in evidence], "unread": unread, "hidden": hidden,
    }

