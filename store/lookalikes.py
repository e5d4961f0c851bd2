"""The lookalikes rows of the Store: same-named resources (once environment words are stripped) read off the
``resources_stem`` index, and the re-stemming of every resource when the stripped words change.

The index (schema 8) holds live resources in (stem, label environment, kind, id) order with their names, so a
label's lookalikes are the first few of each environment, read off it alone: one statement of a few seeks,
however many resources share the stem. Each resource row keeps its label's environment for it
(``resources.label_environment``, ``unknown`` until labeled): the write path calls
:func:`keep_label_environments` with every label it writes.

The store does not know the taxonomy: whoever writes resources hands it a stem function and the fingerprint of
the words it strips (the pipeline passes ``envlabel.labelers.stems.Stemmer``). Table ``meta`` keeps the
fingerprint the stored stems were computed with (key ``stems``); a different one re-stems every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import cache
from itertools import pairwise
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from envlabel.model import UNKNOWN

if TYPE_CHECKING:
    from envlabel.store.dialect import Dialect
    from envlabel.store.transaction import Transaction

#: the ``meta`` key of the stems' fingerprint
STEMS_KEY = "stems"
#: rows read and re-stemmed per statement while re-stemming (all in one transaction)
RESTEM_BATCH = 5000
#: a label's environment onto its resource's row, and (PostgreSQL) many labels' at once
KEEP_ONE = "UPDATE resources SET label_environment = ? WHERE id = ? AND label_environment <> ?"
KEEP_ALL = ("UPDATE resources SET label_environment = v.environment "
            "FROM unnest(?::text[], ?::text[]) AS v(id, environment) "
            "WHERE resources.id = v.id AND resources.label_environment <> v.environment")
#: one part of the lookalike read: live resources with one stem and environment (and kind), with its rank
SELECT = "SELECT id, kind, name, label_environment, {rank} AS environment_rank FROM resources"


#: a resource name -> its stem (empty: no lookalikes); the pipeline passes ``envlabel.labelers.stems.Stemmer``
StemFunction = Callable[[str], str]


class Lookalike(NamedTuple):
    """A live resource with a target's stem, as the lookalike read returns it."""

    id: str
    kind: str
    name: str
    #: its label's environment, ``unknown`` when it has none yet
    environment: str


class LookalikesRows:
    """Mixed into :class:`envlabel.store.sql.Store`: uses its ``_query`` and ``transaction``."""

    if TYPE_CHECKING:
        dialect: Dialect

        def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def _lookup(self, statement: str, params: Sequence[Any]) -> list[Any]: ...
        def transaction(self, bulk: bool = False) -> AbstractContextManager[Transaction]: ...

    def lookalikes(self, stem: str, kind: str | None, exclude_id: str | None, limit: int = 10, *,
                   other_than: str | None = None, ranking: Sequence[str] = ()) -> list[Lookalike]:
        """Up to ``limit`` live resources with ``stem`` (of ``kind``; None: any kind), but not ``exclude_id``,
        in the order of ``ranking`` (environments, most restrictive first; others and ``unknown`` after) then id.

        ``other_than``: only those labeled in another environment (an unlabeled or unknown one always counts as
        another). One read of the stem index, however large the store; an empty stem has no lookalikes."""
        return [Lookalike(r[0], r[1], r[2], r[3])
                for r in self.lookalike_rows(stem, kind, exclude_id, limit, other_than=other_than, ranking=ranking)]

    def lookalike_rows(self, stem: str, kind: str | None, exclude_id: str | None, limit: int = 10, *,
                       other_than: str | None = None, ranking: Sequence[str] = ()) -> list[Any]:
        """:meth:`lookalikes` as the rows read: ``(id, kind, name, environment, rank)`` (the label lookup's)."""
        if not stem:
            return []
        statement, params = lookalike_statement(stem, kind, exclude_id, limit, other_than=other_than, ranking=ranking,
                                                # SQLite runs a UNION ALL's parts one after the other
                                                in_order=self.dialect.name == "sqlite")
        rows = self._lookup(statement, params)
        if self.dialect.name != "sqlite":  # SQLite returned them in order already
            rows.sort(key=_rank_then_id)
        return rows[:limit]

    def stems_fingerprint(self) -> str | None:
        """The fingerprint the stored stems were computed with (None: never stemmed)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (STEMS_KEY,))
        return str(rows[0][0]) if rows else None

    def ensure_stems(self, fingerprint: str, stem_fn: StemFunction) -> int:
        """Re-stem every resource with ``stem_fn`` unless the stored stems were computed with ``fingerprint``
        (then it is one read of ``meta``). Returns how many stems changed."""
        if self.stems_fingerprint() == fingerprint:
            return 0
        with self.transaction() as tx:
            return restem(tx, fingerprint, stem_fn)


def lookalike_statement(stem: str, kind: str | None, exclude_id: str | None, limit: int, *,
                        other_than: str | None = None, ranking: Sequence[str] = (),
                        in_order: bool = True) -> tuple[str, list[Any]]:
    """The statement (``?`` placeholders) and parameters of :meth:`LookalikesRows.lookalikes`; its rows carry their
    environment's rank (column 5) and are the answer once sorted by (rank, id) and cut at ``limit``.

    One part per ranked environment (but ``other_than``), each its first ``limit`` by id, read off the stem index
    (stem, environment, kind, id) alone; then ``unknown`` and every environment outside the ranking, as range
    seeks of that index between the known ones. ``in_order``: the database returns the parts in order (SQLite), so
    the statement stops at the first ``limit`` rows; the parts after those are never read."""
    statement, constants, pick = _plan(kind is not None, exclude_id is not None, tuple(ranking),
                                       other_than=other_than, limit=limit, in_order=in_order)
    return statement, list(pick((stem, kind, exclude_id, *constants)))


@cache
def _plan(by_kind: bool, excluding: bool, ranking: tuple[str, ...], *, other_than: str | None, limit: int,
          in_order: bool) -> tuple[str, tuple[Any, ...], Callable[[tuple[Any, ...]], tuple[Any, ...]]]:
    """The statement of one question's shape, its constant parameters, and what picks its parameters from
    ``(stem, kind, excluded id, *constants)`` (a label asks one of a handful of shapes: each built once)."""
    ranked = tuple(dict.fromkeys(ranking))  # a repeated environment ranks where it first appears
    skipped = other_than if other_than is not None and other_than != UNKNOWN else None
    # the environments outside the ranking are those between these, sorted: ranges of the index
    known = tuple(sorted({*ranked, UNKNOWN, *([skipped] if skipped else [])}))
    tail: list[int | tuple[Any]] = [p for p, on in ((1, by_kind), (2, excluding)) if on]
    template: list[int | tuple[Any]] = []
    for environment in ranked:
        if environment != skipped:
            template += [0, (environment,), *tail, (limit,)]
    if UNKNOWN not in ranked:
        template += [0, (UNKNOWN,), *tail]
    template += [0, (known[0],), *tail]
    for low, high in pairwise(known):
        template += [0, (low,), (high,), *tail]
    template += [0, (known[-1],), *tail, (limit,)]
    if in_order:
        template.append((limit,))
    shape = tuple(environment == skipped or (UNKNOWN if environment == UNKNOWN else "") for environment in ranked)
    constants = tuple(dict.fromkeys(p[0] for p in template if not isinstance(p, int)))
    at = {value: 3 + i for i, value in enumerate(constants)}
    pick = itemgetter(*(p if isinstance(p, int) else at[p[0]] for p in template))
    return _statement_of_shape(by_kind, excluding, shape, len(known), in_order), constants, pick


@cache
def _statement_of_shape(by_kind: bool, excluding: bool, ranked: tuple[bool | str, ...], known: int,
                        in_order: bool) -> str:
    """The statement for one shape of the question (a label asks one of a handful: built once each).
    ``ranked``: per ranked environment, True if left out (the label's own)."""
    tail = (" AND kind = ?" if by_kind else "") + (" AND id <> ?" if excluding else "")

    def where(environment: str) -> str:
        return f"stem = ? AND label_environment {environment}{tail} AND tombstoned_at IS NULL"

    def part(rank: int, condition: str) -> str:
        return f"{SELECT.format(rank=rank)} WHERE {condition} ORDER BY id LIMIT ?"

    parts = [part(rank, where("= ?")) for rank, skip in enumerate(ranked) if skip is not True]
    rest = [where("= ?")] if UNKNOWN not in ranked else []
    rest += [where("< ?"), *[where("> ? AND label_environment < ?")] * (known - 1), where("> ?")]
    parts.append(part(len(ranked), " OR ".join(f"({r})" for r in rest)))
    statement = " UNION ALL ".join(f"SELECT * FROM ({p}) AS p{i}" for i, p in enumerate(parts))
    return f"{statement} LIMIT ?" if in_order else statement


def _rank_then_id(row: Sequence[Any]) -> tuple[int, str]:
    return row[4], row[0]


def keep_label_environments(tx: Transaction, labels: Sequence[tuple[str, str]]) -> None:
    """Inside ``tx``, right after it wrote ``labels`` as ``(target, environment)``: each environment onto its
    resource's row (``resources.label_environment``, which the stem index orders lookalikes by); a row already
    holding its environment is left alone. SQLite: a statement per label (a function call); PostgreSQL: one
    statement for them all (arrays of targets and environments), each row a new row version."""
    if not labels:
        return
    if tx.dialect.name == "postgresql":
        tx.execute(KEEP_ALL, ([t for t, _ in labels], [e for _, e in labels]))
        return
    tx.executemany(KEEP_ONE, [(e, t, e) for t, e in labels])


def restem(tx: Transaction, fingerprint: str, stem_fn: StemFunction, batch: int = RESTEM_BATCH) -> int:
    """Inside ``tx``: re-stem every resource (gone ones too: they may come back) unless ``meta`` already holds
    ``fingerprint`` (read again here: another process may have re-stemmed first), then store it.
    Returns how many stems changed."""
    row = tx.execute("SELECT value FROM meta WHERE key = ?", (STEMS_KEY,)).fetchone()
    if row is not None and row[0] == fingerprint:
        return 0
    changed, after = 0, ""
    while rows := tx.execute("SELECT id, name, stem FROM resources WHERE id > ? ORDER BY id LIMIT ?",
                             (after, batch)).fetchall():
        updates = [(new, r[0]) for r in rows if (new := stem_fn(r[1])) != r[2]]
        if updates:
            tx.executemany("UPDATE resources SET stem = ? WHERE id = ?", updates)
            changed += len(updates)
        after = rows[-1][0]
    tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               (STEMS_KEY, fingerprint))
    return changed
