"""The check as a use case: the label of the target from the store, decided by the pure rule.

The rule (classification, policy, fail-closed environment, reasons) is :func:`envlabel.labelers.decision.decide`;
this module looks the target up, so the CLI, HTTP and MCP all answer through :func:`check`. Two things go
beyond the one read, and only when asked for or needed:

- ``contents``: the target decided as the strictest of its own label and every live label stored below it
  (an account's VPCs, instances, buckets...), for a write that names no resource of its own;
- a never-seen target inside a container a source has scanned is looked up once (its own tags, through
  that source: :func:`envlabel.discovery.lookup.lookup`), labeled like a scan would and stored with its
  evidence; a lookup that cannot answer leaves it decided as production, with the reason why.

:func:`check_seen` is the fast path: the one indexed read, answering when nothing more is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from envlabel.config import Config, GcpSource, Source
from envlabel.discovery.lookup import LookupFailed, LookupUnavailable, lookup
from envlabel.labelers.decision import decide
from envlabel.model import UNKNOWN, Resource
from envlabel.records import CheckRecord, LabelRecord
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_changes
from envlabel.service.core.query import Query
from envlabel.targets import GCP_CRM, gcp_asset_type, gcp_project_of, parse_target


def check(query: Query, target: str, action: str, *, contents: bool = False,
          parameters: Mapping[str, Any] | None = None) -> CheckRecord:
    """The check JSON for ``action`` on ``target`` (raises TargetError if the target is malformed).

    ``contents``: decide as the strictest of the target and everything stored below it. A never-seen target
    is looked up first when a scanned container covers it. ``parameters`` (the call's, None: not given) decide
    its recovery with the target's facts (a final snapshot, a retention set to 0, a propagation policy)."""
    label = query.label(target)
    notes: list[str] = []
    decided_as: str | None = None
    if never_seen(label):
        label, notes, decided_as = look_up(query, target, label)
    base = decide(query.config, action, label, parameters=parameters, now=utcnow())
    if contents:
        return decide_contents(query, base if decided_as is None else redecide(query.config, base, decided_as, []),
                               notes)
    return redecide(query.config, base, decided_as or base["environment"], notes) if notes else base


def check_seen(query: Query, target: str, action: str,
               parameters: Mapping[str, Any] | None = None) -> CheckRecord | None:
    """The check from the one indexed read, or None when the target was never seen (call :func:`check`,
    which may look it up: that waits on the network, so the caller may want it off its event loop). The facts
    its recovery needs come with the label, in that same read."""
    label = query.label(target)
    return None if never_seen(label) else decide(query.config, action, label, parameters=parameters, now=utcnow())


def never_seen(label: LabelRecord) -> bool:
    """Not in the store at all (a gone target was seen, and stays decided as production)."""
    return not label["found"] and "gone_at" not in label


# -- contents ------------------------------------------------------------------------------------
def decide_contents(query: Query, base: CheckRecord, notes: list[str]) -> CheckRecord:
    """``base`` decided again as the strictest of its environment and every live label below the target."""
    config = query.config
    label, environment = base["label"], base["environment"]
    strictest = config.environments[0]
    if environment == strictest or "id" not in label:  # nothing below can make it stricter: no read
        return redecide(config, base, environment, [*notes, f"contents: {label['target']} is decided as "
                                                           f"{strictest} already; what it holds was not read"])
    rank = {env: i for i, env in enumerate(config.environments)}
    below = query.store.subtree_environments(label["id"])
    # unknown (or an environment no longer configured) below counts as the strictest: fail closed
    stricter = sorted((rank.get(env, 0), env, first, count) for env, first, count in below
                      if rank.get(env, 0) < rank[environment])
    if not stricter:
        held = sum(count for _, _, count in below)
        return redecide(config, base, environment, [*notes, f"contents: none of the {held} live resources below "
                                                           f"{label['id']} is stricter than {environment}"])
    _, found, first, count = stricter[0]
    decided_as = found if found in rank else strictest
    more = f", and {count - 1} more below it" if count > 1 else ""
    note = (f"{first} inside {label['id']} is {found} ({cite(query, first, found)}){more}; contents decided as "
            f"{decided_as}")
    return redecide(config, base, decided_as, [*notes, note])


def cite(query: Query, target: str, environment: str) -> str:
    """The evidence that labeled ``target`` ``environment``, as the reasons quote it."""
    view = query.store.label_view(target)
    if view is None or environment == UNKNOWN:
        return "no environment signal"
    evidence = view.evidence
    cited = next((e for e in evidence if e["signal"] == view.decided_by and e["environment"] == environment),
                 next((e for e in evidence if e["environment"] == environment), None))
    return cited["detail"] if cited else f"decided by {view.decided_by}"


def redecide(config: Config, base: CheckRecord, environment: str, notes: list[str]) -> CheckRecord:
    """``base`` decided as ``environment`` by the same rule, ``notes`` added to its reasons before the
    policy's (which stays last, with the approvers to ask); its recovery stays the one ``base`` was decided with."""
    return decide(config, base["action"], base["label"], decided_as=environment, notes=notes,
                  recovered=base.get("recovery"))


# -- lookups of never-seen targets ----------------------------------------------------------------
def look_up(query: Query, raw: str, label: LabelRecord) -> tuple[LabelRecord, list[str], str | None]:
    """The label of a never-seen target after one lookup through the source of its container, what happened, and
    the environment to decide as when that is not the label's (a GCP resource decided by its project's label);
    on any failure the label is the never-seen one it was (decided as production)."""
    config = query.config
    target_id = parse_target(raw).id
    if config.lookup_timeout <= timedelta(0):
        why = f"{raw} was not looked up: lookups are off (lookup_timeout 0s)"
        return by_project(query, raw, target_id, label, LookupUnavailable(why, "set lookup_timeout to look it up"))
    try:
        source = covering_source(query, target_id)
    except LookupFailed as failure:
        return label, [f"the lookup of {raw} failed: {failure.message}; {failure.hint}"], None
    try:
        resource = lookup(source, target_id, config.lookup_timeout)
        if resource is None:
            raise LookupFailed(f"source {source.name} answered that there is no such object",
                               "check the target id; a target that does not exist is decided as production")
        require_parent(query, resource)
    except LookupUnavailable as failure:
        return by_project(query, raw, target_id, label, failure)
    except LookupFailed as failure:
        return label, [f"the lookup of {raw} failed: {failure.message}; {failure.hint}"], None
    commit_changes(query.store, query.taxonomy, source.name, [resource])
    own = [f"{key}={value}" for key, value, match in query.taxonomy.environment_tags(resource.tags)
           if match.environment is not None]
    tags = f"its environment tags {', '.join(own)}" if own else "no environment tag of its own"
    return query.label(raw), [f"{raw} was not in the last scan: looked up through source {source.name} ({tags}), "
                              "labeled and stored"], None


def by_project(query: Query, raw: str, target_id: str, label: LabelRecord,
               unavailable: LookupFailed) -> tuple[LabelRecord, list[str], str | None]:
    """A never-seen GCP resource that cannot be looked up, decided by its project's label when no label of its own
    can have been missed: its project is known, authoritative and fresh, and the GCP source's last scan was
    complete and searched its asset type (it did not exist then, labeled or not). Else fail closed."""
    failed = [f"{unavailable.message}; {unavailable.hint}"]
    project, asset_type = gcp_project_of(target_id), gcp_asset_type(target_id)
    if project is None or asset_type is None:
        return label, failed, None
    try:
        source = covering_source(query, target_id)
    except LookupFailed as failure:
        return label, [*failed, f"it is not decided by its project: {failure.message}; {failure.hint}"], None
    if not isinstance(source, GcpSource) or asset_type not in source.asset_types:
        return label, [*failed, f"it is not decided by its project: source {source.name} does not search "
                                f"{asset_type}, so a label of its own could have been missed; add it to the "
                                "source's asset_types and scan"], None
    scan = next((s for s in query.store.last_scans() if s["source"] == source.name), None)
    if scan is None or not scan["complete"]:
        return label, [*failed, f"it is not decided by its project: the last scan of source {source.name} was not "
                                "complete, so a label of its own could have been missed; make the scan succeed"], None
    project_label = query.label(project)
    environment = project_label["environment"]
    return label, [*failed, f"it is decided by its project {project.removeprefix(GCP_CRM)}, labeled {environment}: "
                            f"the last complete scan of source {source.name} (finished {scan['finished_at']}) "
                            f"searched {asset_type} and did not find it"], environment


def container_of(target_id: str) -> str:
    """The container a never-seen target sits in, read off its id; raises LookupFailed when the id names none."""
    if target_id.startswith("arn:"):
        account = target_id.split(":", 5)[4]
        if not (account.isdigit() and len(account) == 12):
            raise LookupFailed("its ARN names no account (S3 bucket ARNs never do)",
                               "scan the source that holds it, then check again")
        return account
    if target_id.startswith("k8s://"):
        parts = target_id.removeprefix("k8s://").split("/")
        if len(parts) == 4:
            return f"k8s://{parts[0]}/namespaces/{parts[1]}"
        if len(parts) == 3:
            return f"k8s://{parts[0]}"
        raise LookupFailed("a cluster is found only by configuring a source for it", "add a kubernetes source")
    if target_id.isdigit():
        raise LookupFailed("an account is found only by a scan of its organization", "scan the AWS source")
    project = gcp_project_of(target_id)
    if project is not None:  # a GCP resource below a project
        return project
    if target_id.startswith("//storage.googleapis.com/projects/_/buckets/"):
        raise LookupFailed("a bucket's name does not say which project it is in",
                           "scan the GCP source that holds it (storage.googleapis.com/Bucket in its asset_types)")
    raise LookupFailed("GCP organizations, folders and projects are found only by a scan of their organization",
                       "scan the GCP source that holds it, then check again")


def covering_source(query: Query, target_id: str) -> Source:
    """The configured source that scanned the target's container, when that container has an authoritative
    label (a lookup inside an unknown or stale container would decide from what nobody can vouch for)."""
    container = container_of(target_id)
    stored = query.store.get(container)
    if stored is None or stored.tombstoned_at is not None:
        raise LookupFailed(f"its container {container} is not in the store",
                           "scan the source that covers it, then check again")
    try:
        source = query.config.source(stored.source)
    except KeyError:
        raise LookupFailed(f"its container {container} came from source {stored.source}, which is not configured "
                           "any more", "configure the source again, or scan the one that covers it") from None
    container_label = query.answer(container, stored.resource.provider, stored, utcnow())
    if not container_label["authoritative"]:
        why = "is stale" if container_label["stale"] else f"is labeled {container_label['environment']}"
        raise LookupFailed(f"its container {container} {why}",
                           f"scan source {source.name} and fix the container's label (envlabel audit)")
    return source


def require_parent(query: Query, resource: Resource) -> None:
    """A record whose parent (a VPC) no scan has seen would be labeled without that parent's signals."""
    parent = resource.parent
    if parent is not None:
        stored = query.store.get(parent)
        if stored is None or stored.tombstoned_at is not None:
            raise LookupFailed(f"it sits in {parent}, which no scan has seen",
                               "scan the source that covers it, then check again")
