"""Pausing the cyclic garbage collector for a pass that allocates millions of acyclic records.

A neutral module: the scan commit (service.pipeline) and the audit (service.audit) both use it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager, nullcontext
from typing import Any

#: a pass at least this large pauses the collector; a smaller one (a watch event, a test's handful of
#: resources) would pay more for the full collection that starts the pause than the pause saves
LARGE_PASS = 10_000


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of one pass that allocates millions of acyclic records.

    Left on, each collection walks every live object and a messy estate keeps half a million findings
    alive: the collector costs a third of the pass. Merely paused, the first collection after it walks
    all that the pass allocated. So collect first (nothing cyclic is left to strand), pause, and at the
    end freeze what is alive: reference counting frees it as usual, the collector just never walks it.
    The next pass unfreezes first, so nothing stays out of the collector's sight for long.
    """
    enabled = gc.isenabled()
    if enabled:
        gc.unfreeze()
        gc.collect()
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def gc_paused_if_large(items: Iterable[Any]) -> Any:
    """:func:`cyclic_gc_paused` for ``items`` of :data:`LARGE_PASS` or more, or of unknown length (a
    generator: a scan streaming its resources); a no-op context for a small collection."""
    if isinstance(items, Sized) and len(items) < LARGE_PASS:
        return nullcontext()
    return cyclic_gc_paused()
