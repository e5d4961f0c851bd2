"""Opening a store from its URL, and creating one explicitly (``envlabel store init``).

The rule for SQLite, where the store is one file: a store is created only where no file is (a first
``envlabel scan`` or ``serve`` on a new machine), or by ``envlabel store init``, which may also take the
place of an empty (0-byte or table-less) file. An existing file is never re-created: one that is empty,
truncated, not SQLite or not envlabel's is refused with a StoreError saying what was found and what to do.
A PostgreSQL database without envlabel's tables is initialized at first open (other applications' tables
beside them are left alone); one with some of envlabel's tables but no schema version is refused.
"""

from __future__ import annotations

from envlabel.errors import StoreError
from envlabel.store.dialect import Dialect
from envlabel.store.sql import Store

#: connections a PostgreSQL store keeps unless config ``store_pool_size`` says otherwise
POOL_SIZE = 10


def open_store(url: str, *, pool_size: int = POOL_SIZE) -> Store:
    """Open and migrate the store at ``url`` (a new SQLite file is created only where none exists); a
    PostgreSQL store keeps ``pool_size`` connections (config ``store_pool_size``)."""
    if url.startswith("sqlite://"):
        from envlabel.store.sqlite import SQLiteDialect

        dialect = SQLiteDialect.from_url(url)
        if dialect.memory:
            return Store(dialect, create="empty")
        if not dialect.exists():
            dialect.create(_initialize)
        dialect.refuse_unsound()
        return Store(dialect)
    return Store(_postgres(url, pool_size), create="beside")


def init_store(url: str, *, pool_size: int = POOL_SIZE) -> str:
    """Make ``url`` an envlabel store explicitly, never overwriting data; a sentence saying what was done.

    SQLite: a new file where none is, or in place of an empty (0-byte or table-less) one; an envlabel store is
    left as it is; anything else is refused. PostgreSQL: as :func:`open_store`."""
    if not url.startswith("sqlite://"):
        return _ready(Store(_postgres(url, pool_size), create="beside"))
    from envlabel.store.sqlite import SQLiteDialect

    dialect = SQLiteDialect.from_url(url)
    if dialect.memory:
        raise StoreError("an in-memory store (sqlite:///:memory:) lives only as long as its process; set store: "
                         "to a file to initialize one")
    if not dialect.exists():
        made = dialect.create(_initialize)
        return f"created a new, empty store at {dialect.path}" if made else _ready(open_store(url))
    if dialect.is_empty_file():
        dialect.create(_initialize, replace_empty=True)
        return f"initialized the empty file {dialect.path} as a new, empty store"
    try:
        dialect.refuse_unsound()
        store = Store(dialect, create="empty")  # a table-less database is made a store; any other is refused
    except StoreError as exc:
        raise type(exc)(f"{exc}. `envlabel store init` never overwrites a file that holds data") from None
    return _ready(store)


def _ready(store: Store) -> str:
    try:
        if store.created:
            return f"initialized {store.dialect.where} (schema version {store.schema_version})"
        return f"{store.dialect.where} is already an envlabel store (schema version {store.schema_version}); " \
               "left unchanged"
    finally:
        store.close()


def _initialize(dialect: Dialect) -> None:
    Store(dialect, create="empty").close()


def _postgres(url: str, pool_size: int) -> Dialect:
    if not url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"unsupported store URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST/DB")
    try:
        from envlabel.store.postgresql import PostgresDialect  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StoreError(f"PostgreSQL store needs psycopg: pip install 'envlabel[daemon]' ({exc})") from exc
    dialect: Dialect = PostgresDialect.from_url(url, pool_size)
    return dialect
