"""The store never loses data silently: real files that are empty, truncated, random, text, another
application's SQLite database or corrupted mid-file are refused by every command (exit 1, one line naming
the file, no traceback) and left byte for byte as they were; ``envlabel store init`` creates a store only
where there is none or an empty file; a server whose store turns out corrupt on a read answers 503 and
fails closed over a real socket, so a guarded delete of a production bucket never reaches the cloud."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import yaml
from click.testing import Result

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import StoreError, UnreachableError
from envlabel.guard.boto3 import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import CorruptStore, init_store, open_store
from envlabel.store.schema import MIGRATIONS
from tests.conftest import free_port
from tests.estates import cli
from tests.postgres_db import fresh_schema

ACCOUNT = "123456789012"  # the account moto gives the plain test credentials
PROD_BUCKET, SCRATCH_BUCKET = "prod-exports", "scratch-exports"
PROD, SCRATCH = f"arn:aws:s3:::{PROD_BUCKET}", f"arn:aws:s3:::{SCRATCH_BUCKET}"
FILLER = 3000  # enough label rows for dozens of leaf pages between the first and the last
PAGE = 8192


# -- building and breaking real store files --------------------------------------------------------
def bucket(name: str, environment: str) -> Resource:
    return Resource(f"arn:aws:s3:::{name}", "aws", "s3:bucket", name, ACCOUNT, {"Environment": environment},
                    f"{ACCOUNT}/global")


def build_store(path: Path) -> None:
    """A real store: the sandbox bucket's label is written first, thousands of others, the production
    bucket's last (so their label rows sit in the first and in the last leaf page of the labels table)."""
    store = open_store(f"sqlite:///{path}")
    now = utcnow()
    account = Resource(ACCOUNT, "aws", "aws:account", "test", None, {}, "org")
    for source, resources in (("first", [account, bucket(SCRATCH_BUCKET, "sandbox")]),
                              ("filler", [bucket(f"filler-{i:05d}", "staging") for i in range(FILLER)]),
                              ("last", [bucket(PROD_BUCKET, "production")])):
        commit_scan(store, Taxonomy(), ScanResult(source, resources, scopes=frozenset({f"{ACCOUNT}/global"})),
                    now, now)
    store.close()
    assert not Path(f"{path}-wal").exists()  # closed: every page is in the file itself


def corrupt_labels(path: Path, *, spare_first: bool) -> None:
    """Overwrite the leaf pages of the labels table (all but the first one, with ``spare_first``) with
    garbage, as a disk or a careless copy would."""
    with sqlite3.connect(path) as conn:
        leaves = [row[0] for row in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'labels' AND pagetype = 'leaf' ORDER BY path")]
        first_cells = conn.execute("SELECT ncell FROM dbstat WHERE pageno = ?", (leaves[0],)).fetchone()[0]
        prod_row = conn.execute("SELECT rowid FROM labels WHERE target = ?", (PROD,)).fetchone()[0]
        scratch_row = conn.execute("SELECT rowid FROM labels WHERE target = ?", (SCRATCH,)).fetchone()[0]
    conn.close()
    assert len(leaves) > 10 and scratch_row <= first_cells < prod_row  # the rows are where the test needs them
    rng = random.Random(12)
    with path.open("r+b") as file:
        for page in leaves[1:] if spare_first else leaves:
            file.seek((page - 1) * PAGE)
            file.write(rng.randbytes(PAGE))


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "envlabel.db"
    build_store(path)
    return path.read_bytes()


def foreign_db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ana')")
    conn.close()


def write(content: Callable[[bytes], bytes]) -> Callable[[Path, bytes], None]:
    def make(path: Path, good: bytes) -> None:
        path.write_bytes(content(good))
    return make


def corrupted(path: Path, good: bytes) -> None:
    path.write_bytes(good)
    corrupt_labels(path, spare_first=False)


#: (what the file is, how it is made from a good store's bytes, what the one line of the error says)
BAD_FILES: list[tuple[str, Callable[[Path, bytes], None], str]] = [
    ("empty", write(lambda good: b""), "is empty (0 bytes)"),
    ("truncated in the header", write(lambda good: good[:60]), "is truncated (60 bytes"),
    ("truncated to one page", write(lambda good: good[:PAGE]), "is truncated (8192 bytes; its header says"),
    ("truncated to half", write(lambda good: good[:len(good) // PAGE // 2 * PAGE]), "is truncated"),
    ("random bytes", write(lambda good: random.Random(3).randbytes(len(good))), "is not a SQLite database"),
    ("a text file", write(lambda good: b"store: sqlite:///envlabel.db\n" * 40), "is not a SQLite database"),
    ("another application's database", lambda path, good: foreign_db(path),
     "is not an envlabel store (it holds other tables: users)"),
    ("corrupted mid-file", corrupted, "is corrupt: database disk image is malformed"),
]
COMMANDS = [("get", PROD), ("check", "--action", "s3:DeleteBucket", PROD), ("list",), ("history", PROD),
            ("audit",), ("scan",), ("override", "list"), ("override", "set", PROD, "sandbox", "--reason", "x",
                                                          "--by", "mallory")]


def config_for(directory: Path, store: Path) -> Path:
    config = directory / "envlabel.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{store}", "sources": [
        {"name": "aws", "type": "aws", "endpoint_url": f"http://127.0.0.1:{free_port()}", "regions": ["us-east-1"]}]}))
    return config


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def assert_refused(result: Result, store: Path, says: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("envlabel: "), result.stderr
    assert str(store) in result.stderr and says in result.stderr, result.stderr


@pytest.mark.parametrize(("kind", "make", "says"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_every_command_refuses_a_bad_store_file_and_leaves_it_as_it_was(
        tmp_path: Path, good_store: bytes, kind: str, make: Callable[[Path, bytes], None], says: str) -> None:
    store = tmp_path / "envlabel.db"
    make(store, good_store)
    config = config_for(tmp_path, store)
    before = snapshot(tmp_path)
    for command in COMMANDS:
        assert_refused(cli(config, *command), store, says)
        assert snapshot(tmp_path) == before, command  # nothing re-created, written, or left beside it
    if kind != "empty":
        assert_refused(cli(config, "store", "init"), store, "never overwrites a file that holds data")
        assert snapshot(tmp_path) == before


def test_serve_refuses_an_empty_store_before_it_listens(tmp_path: Path) -> None:
    store = tmp_path / "envlabel.db"
    store.write_bytes(b"")
    exe = Path(sys.executable).parent / "envlabel"
    done = subprocess.run([str(exe), "serve", "--config", str(config_for(tmp_path, store)), "--port",
                           str(free_port())], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "is empty (0 bytes)" in done.stderr and "envlabel store init" in done.stderr
    assert "Traceback" not in done.stderr
    assert store.read_bytes() == b""


# -- creating a store ----------------------------------------------------------------------------
def test_a_store_is_created_where_no_file_is_and_init_takes_only_an_empty_file(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "envlabel.db"
    config = config_for(tmp_path, fresh)
    assert cli(config, "get", PROD).exit_code == 3  # first use on a new machine: created, never seen
    assert fresh.stat().st_size > 0 and sorted(p.name for p in fresh.parent.iterdir()) == ["envlabel.db"]
    result = cli(config, "store", "init")
    assert result.exit_code == 0 and "is already an envlabel store (schema version" in result.stdout
    fresh.write_bytes(b"")
    assert cli(config, "get", PROD).exit_code == 1
    result = cli(config, "store", "init")
    assert result.exit_code == 0 and "initialized the empty file" in result.stdout, result.output
    assert cli(config, "get", PROD).exit_code == 3
    elsewhere = config_for(tmp_path, tmp_path / "other.db")
    result = cli(elsewhere, "store", "init")
    assert result.exit_code == 0 and "created a new, empty store" in result.stdout


def test_init_keeps_an_empty_file_whose_wal_holds_data(tmp_path: Path) -> None:
    store = tmp_path / "envlabel.db"
    store.write_bytes(b"")
    Path(f"{store}-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(60))
    config = config_for(tmp_path, store)
    before = snapshot(tmp_path)
    assert_refused(cli(config, "store", "init"), store, "its -wal file holds 64 bytes")
    assert snapshot(tmp_path) == before


def test_stores_created_at_once_by_many_openers_are_one_store(tmp_path: Path) -> None:
    import threading

    url = f"sqlite:///{tmp_path / 'envlabel.db'}"
    errors: list[BaseException] = []
    opened = []

    def open_one() -> None:
        try:
            opened.append(open_store(url))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with opened[0].transaction() as tx:
        tx.execute("INSERT INTO fences (source, epoch, holder, acquired_at) VALUES ('x', 1, 'a', 'now')")
    assert all(s._query("SELECT COUNT(*) FROM fences")[0][0] == 1 for s in opened)  # all of them, one file
    for s in opened:
        s.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envlabel.db"]  # no temporary file left behind


def test_a_store_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "envlabel.db"
    store = open_store(f"sqlite:///{path}")
    with store.transaction() as tx:
        tx.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    store.close()
    with pytest.raises(StoreError, match=r"newer than this envlabel .*upgrade envlabel"):
        open_store(f"sqlite:///{path}")


def test_an_envlabel_table_without_the_schema_version_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "envlabel.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE schema_version")
    conn.close()
    with pytest.raises(CorruptStore, match=r"has envlabel's tables .* but no schema_version table"):
        open_store(f"sqlite:///{path}")


# -- a full check --------------------------------------------------------------------------------
def test_store_check_reads_every_page(tmp_path: Path, good_store: bytes) -> None:
    store = tmp_path / "envlabel.db"
    store.write_bytes(good_store)
    config = config_for(tmp_path, store)
    result = cli(config, "store", "check")
    assert result.exit_code == 0 and "intact (schema version" in result.stdout, result.output
    corrupt_labels(store, spare_first=True)  # opening's probe reads the first page only: it opens
    assert cli(config, "list", "--json").exit_code == 1  # ... and the first read that meets the damage says so
    assert_refused(cli(config, "store", "check"), store, "is corrupt:")


# -- serving a store whose corruption is found by a read --------------------------------------------
@pytest.fixture
def corrupt_server(tmp_path: Path, good_store: bytes) -> Iterator[str]:
    path = tmp_path / "envlabel.db"
    path.write_bytes(good_store)
    corrupt_labels(path, spare_first=True)
    store = open_store(f"sqlite:///{path}")  # the probe passes: the damage is further in
    try:
        with BackgroundServer(config_from_dict({}), store) as server:
            yield server.url
    finally:
        store.close()


def test_a_corrupt_store_answers_503_and_every_answer_fails_closed(corrupt_server: str, moto: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    for name in (PROD_BUCKET, SCRATCH_BUCKET):
        s3.create_bucket(Bucket=name)
    with httpx.Client(base_url=corrupt_server, timeout=30) as api:
        assert api.get("/readyz").status_code == 200  # nothing has met the damage yet
        # the attack: an agent deletes the production bucket while envlabel's store is damaged
        guarded = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
        protect(guarded, Client(corrupt_server))
        with pytest.raises(UnreachableError, match="503"):
            guarded.delete_bucket(Bucket=PROD_BUCKET)
        ready = api.get("/readyz")
        assert ready.status_code == 503 and "is corrupt: database disk image is malformed" in ready.json()["message"]
        # every later answer fails closed, even for a target whose row is intact
        for response in (api.get("/v1/label", params={"target": SCRATCH}),
                         api.post("/v1/check", json={"target": SCRATCH, "action": "s3:DeleteBucket"}),
                         api.post("/v1/labels", json={"targets": [SCRATCH]}),
                         api.get("/v1/resources")):
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["error"] == "store unavailable"
            assert "restore it from a backup" in body["message"]
            assert "treat every target as production" in body["message"]
    with pytest.raises(UnreachableError):
        Client(corrupt_server).check(SCRATCH, "s3:DeleteBucket")  # never an allow
    with pytest.raises(UnreachableError):
        guarded.delete_bucket(Bucket=SCRATCH_BUCKET)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {PROD_BUCKET, SCRATCH_BUCKET}


# -- PostgreSQL ----------------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgresql_initializes_beside_other_tables_and_refuses_a_damaged_or_newer_schema() -> None:
    import psycopg

    with fresh_schema() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE billing (id INTEGER)")
        assert "initialized the PostgreSQL store" in init_store(url)
        assert "already an envlabel store" in init_store(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE schema_version")
        with pytest.raises(CorruptStore, match=r"has envlabel's tables .* but no schema_version table"):
            open_store(url)
        with psycopg.connect(url, autocommit=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                                                 "current_schema()")}
        assert "schema_version" not in tables  # refused, not repaired behind the operator's back
    with fresh_schema() as url:
        open_store(url).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
        with pytest.raises(StoreError, match="newer than this envlabel"):
            open_store(url)


@pytest.mark.postgres
def test_postgresql_a_table_dropped_under_a_running_store_fails_closed() -> None:
    import psycopg

    with fresh_schema() as url:
        store = open_store(url)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE labels")
            with pytest.raises(CorruptStore, match=r"is corrupt: .*labels"):
                store.label_view(PROD)
            with pytest.raises(CorruptStore):
                store.probe()
        finally:
            store.close()
