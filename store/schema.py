"""Versioned schema migrations, applied in order at open; each runs once.

Timestamps are ISO-8601 UTC text (``2026-01-02T03:04:05.000000Z``): they sort
as text and read the same in SQLite and PostgreSQL. ``{serial}`` is the
dialect's auto-increment primary key.
"""

from __future__ import annotations

import re

MIGRATIONS: list[str] = [
    # 1: the core pipeline
    """
    CREATE TABLE resources (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        parent TEXT,
        scope TEXT NOT NULL,
        region TEXT NOT NULL,
        path TEXT NOT NULL,
        tags TEXT NOT NULL,
        name_signal INTEGER NOT NULL,
        declared TEXT,
        aliases TEXT NOT NULL,
        digest TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        tombstoned_at TEXT
    );
    CREATE INDEX resources_source ON resources (source, tombstoned_at);
    CREATE INDEX resources_parent ON resources (parent);
    CREATE TABLE aliases (alias TEXT PRIMARY KEY, target TEXT NOT NULL);
    CREATE TABLE scopes (
        source TEXT NOT NULL, scope TEXT NOT NULL, last_ok TEXT NOT NULL,
        PRIMARY KEY (source, scope)
    );
    CREATE TABLE scans (
        id {serial},
        source TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        complete INTEGER NOT NULL,
        resources INTEGER NOT NULL,
        changed INTEGER NOT NULL,
        removed INTEGER NOT NULL,
        errors TEXT NOT NULL
    );
    CREATE INDEX scans_source ON scans (source, id);
    CREATE TABLE labels (
        target TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        conflict INTEGER NOT NULL,
        evidence TEXT NOT NULL,
        valid_until TEXT,
        labeled_at TEXT NOT NULL,
        scan_id INTEGER
    );
    CREATE INDEX labels_environment ON labels (environment);
    CREATE INDEX labels_valid_until ON labels (valid_until);
    CREATE TABLE label_history (
        id {serial},
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        scan_id INTEGER,
        event TEXT NOT NULL,
        before TEXT,
        environment TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        conflict INTEGER NOT NULL,
        evidence TEXT NOT NULL
    );
    CREATE INDEX label_history_target ON label_history (target, at);
    CREATE TABLE overrides (
        target TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        reason TEXT NOT NULL,
        author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT
    );
    CREATE TABLE override_events (
        id {serial},
        target TEXT NOT NULL,
        action TEXT NOT NULL,
        environment TEXT,
        reason TEXT NOT NULL,
        author TEXT NOT NULL,
        at TEXT NOT NULL,
        expires_at TEXT
    );
    CREATE INDEX override_events_target ON override_events (target, at);
    """,
    # 2: history keeps when a label lapses (an override that took part expires), so `get --at` after
    # that moment does not answer with the lapsed override
    """
    ALTER TABLE label_history ADD COLUMN valid_until TEXT
    """,
    # 3: fencing tokens. The replica that becomes the leader advances each source's epoch; a scan commits only
    # while its epoch is still current, so a leader that lost its lease cannot write a late scan
    """
    CREATE TABLE fences (
        source TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL,
        holder TEXT NOT NULL,
        acquired_at TEXT NOT NULL
    )
    """,
    # 4: lookalikes. A resource's name with its environment words stripped (orders-prod-db -> orders-db), so a check
    # finds same-named resources in other environments from an index; meta remembers which words stripped it
    """
    ALTER TABLE resources ADD COLUMN stem TEXT;
    CREATE INDEX resources_stem ON resources (stem, kind);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """,
    # 5: the decision log (every check: who, what, on what, as which environment, decided how, by which rule)
    # and approval requests (bound to a principal, an action, a target and a digest of the parameters; used once)
    """
    CREATE TABLE decisions (
        id {serial},
        at TEXT NOT NULL,
        principal TEXT NOT NULL,
        claimed TEXT,
        groups TEXT NOT NULL,
        interface TEXT NOT NULL,
        mode TEXT NOT NULL,
        action TEXT NOT NULL,
        action_class TEXT NOT NULL,
        target TEXT NOT NULL,
        target_id TEXT,
        environment TEXT NOT NULL,
        decision TEXT NOT NULL,
        rule TEXT NOT NULL,
        reasons TEXT NOT NULL,
        label_snapshot INTEGER,
        approval_id TEXT,
        dry_run INTEGER NOT NULL
    );
    CREATE INDEX decisions_at ON decisions (at);
    CREATE INDEX decisions_principal ON decisions (principal, id);
    CREATE INDEX decisions_target ON decisions (target_id, id);
    CREATE INDEX decisions_decision ON decisions (decision, id);
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        target_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        environment TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        decision_reason TEXT,
        spent_at TEXT,
        link_sha256 TEXT,
        snapshot TEXT NOT NULL
    );
    CREATE INDEX approvals_request ON approvals (principal, action, target_id, digest, status);
    CREATE INDEX approvals_status ON approvals (status, created_at)
    """,
    # 6: recovery facts. What decides whether a destructive change can be undone (deletion protection, backups,
    # versioning, reclaim policy...), as the last scan read them, and their history: one row whenever a commit
    # changes a resource's facts, so what could have been recovered at a past moment can be read back
    """
    ALTER TABLE resources ADD COLUMN facts TEXT NOT NULL DEFAULT '{{}}';
    CREATE TABLE fact_history (
        id {serial},
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        scan_id INTEGER,
        facts TEXT NOT NULL
    );
    CREATE INDEX fact_history_target ON fact_history (target, at)
    """,
    # 7: the webhook outbox. Every delivery (one event to one receiver) is a row written by the process that
    # publishes it, so a delivery still retrying when the daemon stops is sent after it starts again; the leader
    # claims due rows (claimed_by/claimed_until) so two replicas never send one row at once. ``delivery`` is the
    # idempotency key a receiver dedupes by: one per event, the same on every attempt, unique with the receiver
    """
    CREATE TABLE outbox (
        id {serial},
        delivery TEXT NOT NULL,
        receiver TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        claimed_by TEXT,
        claimed_until TEXT,
        delivered_at TEXT,
        failed_at TEXT,
        last_error TEXT
    );
    CREATE UNIQUE INDEX outbox_delivery ON outbox (delivery, receiver);
    CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
    CREATE INDEX outbox_done ON outbox (created_at)
    """,
    # 8: lookalikes read by environment. Each resource keeps its label's environment (``unknown`` until labeled;
    # the write path sets it with every label it writes), and the stem index holds what a lookalike shows, live
    # rows only, in (stem, environment, kind, id) order: the first few of each environment are read off the index
    # alone instead of every same-stemmed resource joined to its label
    """
    ALTER TABLE resources ADD COLUMN label_environment TEXT NOT NULL DEFAULT 'unknown';
    UPDATE resources SET label_environment = l.environment FROM labels l
        WHERE l.target = resources.id AND l.environment <> 'unknown';
    DROP INDEX resources_stem;
    CREATE INDEX resources_stem ON resources (stem, label_environment, kind, id, name, tombstoned_at)
        WHERE tombstoned_at IS NULL
    """,
]

#: the schema's version table, which marks a database as an envlabel store
VERSION_TABLE = "schema_version"
#: every table the migrations create: what a store at the current version holds besides VERSION_TABLE
TABLES: frozenset[str] = frozenset(re.findall(r"CREATE TABLE (\w+)", "".join(MIGRATIONS)))
