"""How the store fails, in sentences that say what to do.

A :class:`CorruptStore` is a store whose data is damaged (SQLite ``database disk image is malformed``, a
table missing, PostgreSQL ``XX001``). Once a store has raised one it refuses every later read and write with
the same error until the process restarts: a damaged database can answer wrongly without raising, so none of
its answers is trusted (the check fails closed: 503, treat the target as production).
"""

from __future__ import annotations

from envlabel.errors import StoreError

#: the end of every message of a store that cannot answer
FAIL_CLOSED = "until then treat every target as production (envlabel answers 503 and its guards block)"


class CorruptStore(StoreError):
    """The store's data is damaged: restore it from a backup."""


def corrupt(where: str, detail: str) -> CorruptStore:
    """The error of a damaged store ``where`` (``the store /path.db``), ``detail`` saying what was found.

    >>> str(corrupt("the store /x.db", "database disk image is malformed"))[:66]
    'the store /x.db is corrupt: database disk image is malformed; rest'
    """
    return CorruptStore(f"{where} is corrupt: {detail}; restore it from a backup (then restart any `envlabel "
                        "serve` using it), or move it away and run `envlabel store init` and `envlabel scan` to "
                        f"start over, losing its overrides and history; {FAIL_CLOSED}")


def failed(where: str, detail: str, advice: str) -> StoreError:
    """The error of a store ``where`` that could not answer for a reason that may pass (``advice``)."""
    return StoreError(f"{where} failed: {detail}; {advice}; {FAIL_CLOSED}")


def not_a_store(where: str, tables: set[str]) -> StoreError:
    """The error of a database ``where`` that holds ``tables`` but none of envlabel's."""
    if not tables:
        return StoreError(f"{where} is a database with no tables, not an envlabel store; run `envlabel store init` "
                          "to make it one, or point store: at the envlabel store")
    listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    return StoreError(f"{where} is not an envlabel store (it holds other tables: {listed}); point store: at the "
                      "envlabel store, or at a new file (envlabel never writes into a database it did not create)")
