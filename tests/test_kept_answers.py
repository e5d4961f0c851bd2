"""Kept answers: ``Query.label`` gives an answer again, without reading the store, only while nothing was committed
to the store since it was read and until the moment the answer would change by itself (turning stale, an override
expiring).

Everything runs on a real SQLite file written through the real pipeline; the store is changed from another
process (the real ``envlabel`` CLI) and from this process's writer, and read over the real HTTP server.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.clock import utcnow
from envlabel.service.core.overrides import set_override
from envlabel.service.core.pipeline import commit_changes
from envlabel.service.core.query import KEPT_ANSWERS, Query
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from envlabel.store.codec import parse_ts
from envlabel.store.sql import Store
from tests.api_estate import make_config
from tests.postgres_db import fresh_schema
from tests.test_lookalikes import DEFAULT, NEVER_SEEN, PROD, STAGING, db, populate

ENVLABEL = Path(sys.executable).parent / "envlabel"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "envlabel.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{path}")
    populate(opened, Taxonomy.from_config(DEFAULT))
    yield opened
    opened.close()


def reads_of(store: Store) -> list[str]:
    """Every statement this thread's reader connection runs from now on (the change counter's aside)."""
    statements: list[str] = []
    store._reader().set_trace_callback(
        lambda statement: None if statement == "PRAGMA data_version" else statements.append(statement))
    return statements


def test_an_answer_asked_again_reads_nothing_but_the_change_counter(store: Store) -> None:
    query = Query(DEFAULT, store)
    reads = reads_of(store)
    first = query.label(STAGING)
    assert len(reads) == 2  # its label view and its lookalikes
    assert query.label(STAGING) == first  # asked again: read, and kept
    assert len(reads) == 4
    again = [query.label(STAGING) for _ in range(3)]
    assert len(reads) == 4
    assert again == [first] * 3
    assert first["environment"] == "staging" and first["lookalikes"]
    batch = query.labels([STAGING, PROD, STAGING])
    assert len(reads) == 6  # PROD alone was read
    assert batch == [first, query.label(PROD), first]
    assert len(reads) == 8  # PROD asked again: read, and kept from now on
    assert query.labels([PROD]) == [batch[1]] and len(reads) == 8


def test_a_caller_changing_its_answer_does_not_change_the_next(store: Store) -> None:
    query = Query(DEFAULT, store)
    first = deepcopy(query.label(PROD))
    assert query.label(PROD) == first  # kept from now on
    mine = query.label(PROD)
    mine["environment"] = "sandbox"
    mine["evidence"][0]["environment"] = "sandbox"
    mine["lookalikes"][0]["environment"] = "production"
    mine["facts"]["planted"] = True
    assert query.label(PROD) == first
    assert query.labels([PROD]) == [first]


def test_a_production_override_from_another_process_ends_a_kept_staging_answer_over_http(
        store: Store, path: Path, tmp_path: Path) -> None:
    """The attack: an agent's daemon has answered "staging" for a database an operator has just declared
    production from another shell. The next answer over the real API says production and the check denies."""
    config = tmp_path / "envlabel.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{path}"}))
    with BackgroundServer(make_config(str(path)), store) as server, httpx.Client(base_url=server.url) as api:
        for _ in range(3):  # asked again and again: kept
            assert api.get("/v1/label", params={"target": STAGING}).json()["environment"] == "staging"
        before = api.post("/v1/check", json={"target": STAGING, "action": "rds:DeleteDBInstance"}).json()
        assert before["label"]["environment"] == "staging"
        command = [str(ENVLABEL), "override", "set", STAGING, "production", "--reason", "holds orders",
                   "--by", "dba-lead", "--config", str(config)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        label = api.get("/v1/label", params={"target": STAGING}).json()
        assert (label["environment"], label["decided_by"]) == ("production", "override")
        check = api.post("/v1/check", json={"target": STAGING, "action": "rds:DeleteDBInstance"}).json()
        assert check["decision"] == "deny"
        assert check["label"]["environment"] == "production"
        batch = api.post("/v1/labels", json={"targets": [STAGING]}).json()["labels"]
        assert batch[0]["environment"] == "production"
    assert open_store(f"sqlite:///{path}").label_view(STAGING) is not None  # the database is still there


def test_a_commit_by_this_process_writer_ends_every_kept_answer(store: Store) -> None:
    query = Query(DEFAULT, store)
    assert query.label(NEVER_SEEN)["found"] is False
    assert query.label(PROD)["environment"] == "production"
    seen = replace(db(NEVER_SEEN), tags={"env": "staging"})
    commit_changes(store, Taxonomy.from_config(DEFAULT), "aws", [seen])
    found = query.label(NEVER_SEEN)
    assert (found["found"], found["environment"]) == (True, "staging")
    commit_changes(store, Taxonomy.from_config(DEFAULT), "aws", [], gone=[PROD])
    gone = query.label(PROD)
    assert (gone["found"], gone["environment"], "gone_at" in gone) == (False, "unknown", True)


def test_a_kept_answer_turns_stale_when_its_time_comes(store: Store) -> None:
    query = Query(DEFAULT, store)
    observed = query.label(PROD)["observed_at"]
    assert observed is not None
    at = parse_ts(observed)
    assert at is not None
    edge = at + DEFAULT.stale_after
    query.label(PROD, edge - timedelta(seconds=2))
    fresh = query.label(PROD, edge - timedelta(seconds=1))  # asked again: kept
    assert (fresh["stale"], fresh["authoritative"]) == (False, True)
    stale = query.label(PROD, edge + timedelta(seconds=1))
    assert (stale["stale"], stale["authoritative"]) == (True, False)
    # an earlier moment than the answer kept is answered for that moment, not from the later one
    assert query.label(PROD, edge - timedelta(seconds=1))["stale"] is False


def test_a_kept_answer_ends_when_the_override_it_relied_on_expires(store: Store) -> None:
    now = utcnow()
    query = Query(DEFAULT, store)
    set_override(query, STAGING, "production", reason="freeze", author="ops", expires_at=now + timedelta(hours=1),
                 now=now)
    query.label(STAGING, now + timedelta(minutes=58))
    held = query.label(STAGING, now + timedelta(minutes=59))  # asked again: kept
    assert (held["environment"], held["decided_by"]) == ("production", "override")
    after = query.label(STAGING, now + timedelta(hours=1, seconds=1))
    assert (after["environment"], after["decided_by"]) != ("production", "override")
    assert after["environment"] == "staging"


def test_at_most_kept_answers_are_kept_the_oldest_dropped(store: Store) -> None:
    query = Query(DEFAULT, store)
    for i in range(KEPT_ANSWERS + 10):
        query.label(f"{NEVER_SEEN}-{i}")
        query.label(f"{NEVER_SEEN}-{i}")  # asked again: kept
    kept = query._answers.kept
    assert len(kept) == KEPT_ANSWERS
    assert f"{NEVER_SEEN}-0" not in kept and f"{NEVER_SEEN}-{KEPT_ANSWERS + 9}" in kept


def test_a_thread_asking_after_a_commit_ends_what_other_threads_kept(store: Store) -> None:
    """Answers are shared between threads; each thread's reader connection sees commits on its own counter, and
    a thread that never asked before cannot know what it missed: either way nothing read before is given."""
    query = Query(DEFAULT, store)
    query.label(STAGING)
    assert query.label(STAGING)["environment"] == "staging"  # kept by this thread
    answers: list[str] = []

    def other_thread() -> None:
        answers.append(query.label(STAGING)["environment"])

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert answers == ["staging"]
    set_override(query, STAGING, "production", reason="freeze", author="ops")  # this process's writer
    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert answers == ["staging", "production"]
    assert query.label(STAGING)["environment"] == "production"


def test_an_answer_read_while_the_store_changed_is_not_kept(store: Store) -> None:
    """A thread reading an answer while another thread ends the generation does not keep its (older) answer."""
    query = Query(DEFAULT, store)
    generation = query.generation()
    assert generation is not None
    query.label(STAGING)
    old = query.label(STAGING)
    set_override(query, STAGING, "production", reason="freeze", author="ops")
    assert query.label(STAGING)["environment"] == "production"  # this thread saw the commit: a new generation
    query._answers.keep(STAGING, old, generation, utcnow(), utcnow() + timedelta(hours=1))  # the slow reader
    assert query.label(STAGING)["environment"] == "production"


def test_a_sweep_of_targets_asked_once_keeps_none_of_them(store: Store) -> None:
    """Most targets of a sweep (an audit, a dashboard) are asked once: remembered as asked, their answers not
    copied and kept."""
    query = Query(DEFAULT, store)
    query.labels([PROD, STAGING, NEVER_SEEN])
    query.label(PROD)
    assert set(query._answers.kept) == {PROD}


def test_an_in_memory_store_keeps_nothing() -> None:
    """Connections sharing an in-memory database are not told of each other's commits: nothing is kept."""
    store = open_store("sqlite:///:memory:")
    populate(store, Taxonomy.from_config(DEFAULT))
    query = Query(DEFAULT, store)
    query.labels([PROD, PROD])
    assert query.generation() is None and not query._answers.kept


@pytest.mark.postgres
def test_postgresql_keeps_nothing() -> None:
    with fresh_schema() as url:
        store = open_store(url)
        try:
            populate(store, Taxonomy.from_config(DEFAULT))
            query = Query(DEFAULT, store)
            assert query.label(PROD)["environment"] == "production"
            assert query.generation() is None and not query._answers.kept
        finally:
            store.close()
