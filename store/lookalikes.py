"""The lookalikes rows of the Store: same-named resources (once environment words are stripped) read off the
``resources_stem (stem, kind)`` index, and the re-stemming of every resource when the stripped words change.

The store does not know the taxonomy: whoever writes resources hands it a stem function and the fingerprint of
the words it strips (the pipeline passes ``envlabel.labelers.stems.Stemmer``). Table ``meta`` keeps the
fingerprint the stored stems were computed with (key ``stems``); a different one re-stems every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from envlabel.store.transaction import Transaction

#: the ``meta`` key of the stems' fingerprint
STEMS_KEY = "stems"
#: rows read and re-stemmed per statement while re-stemming (all in one transaction)
RESTEM_BATCH = 5000
#: the lookalike read: live resources with one stem (and kind), with their label's environment
SELECT = ("SELECT r.id, r.kind, r.name, COALESCE(l.environment, 'unknown') FROM resources r "
          "LEFT JOIN labels l ON l.target = r.id WHERE r.stem = ? AND r.tombstoned_at IS NULL")


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
        def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def _lookup(self, statement: str, params: Sequence[Any]) -> list[Any]: ...
        def transaction(self, bulk: bool = False) -> AbstractContextManager[Transaction]: ...

    def lookalikes(self, stem: str, kind: str | None, exclude_id: str | None, limit: int = 10, *,
                   other_than: str | None = None, ranking: Sequence[str] = ()) -> list[Lookalike]:
        """Up to ``limit`` live resources with ``stem`` (of ``kind``; None: any kind), but not ``exclude_id``,
        in the order of ``ranking`` (environments, most restrictive first; others and ``unknown`` after) then id.

        ``other_than``: only those labeled in another environment (an unlabeled or unknown one always counts as
        another). One read of the stem index, however large the store; an empty stem has no lookalikes."""
        if not stem:
            return []
        statement, params = lookalike_statement(stem, kind, exclude_id, limit, other_than=other_than, ranking=ranking)
        return [Lookalike(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in self._lookup(statement, params)]

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
                        other_than: str | None = None, ranking: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """The statement (``?`` placeholders) and parameters of :meth:`LookalikesRows.lookalikes`."""
    params: list[Any] = [stem]
    params += [v for v in (kind, exclude_id, other_than) if v is not None]
    statement = _statement_of_shape(kind is not None, exclude_id is not None, other_than is not None, len(ranking))
    return statement, [*params, *ranking, limit]


@cache
def _statement_of_shape(by_kind: bool, excluding: bool, other_than: bool, ranked: int) -> str:
    """The statement for one shape of the question (a label asks one of a handful: built once each)."""
    statement = SELECT
    if by_kind:
        statement += " AND r.kind = ?"
    if excluding:
        statement += " AND r.id <> ?"
    if other_than:
        statement += " AND (l.environment IS NULL OR l.environment = 'unknown' OR l.environment <> ?)"
    return f"{statement} ORDER BY {rank_order(['?'] * ranked)}r.id LIMIT ?"


def rank_order(ranking: Sequence[str]) -> str:
    """The ORDER BY term that puts the environments of ``ranking`` first, in its order (its parameters:
    ``ranking`` itself), followed by a comma; empty for no ranking."""
    if not ranking:
        return ""
    whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(ranking)))
    return f"CASE COALESCE(l.environment, 'unknown') {whens} ELSE {len(ranking)} END, "


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
