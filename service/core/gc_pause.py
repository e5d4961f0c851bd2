"""Pausing the cyclic garbage collector for a pass that allocates millions of acyclic records.

A neutral module: the scan commit (service.pipeline) and the audit (service.audit) both use it.
Only a large pass pauses: starting a pause costs one full collection, which walks every live object
of the process while holding the GIL (the event loop answering ``GET /v1/label`` waits for it), so a
small pass (a watch event, a findings request on a few hundred resources) must never pay it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator, Sized
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

#: a pass at least this large pauses the collector; a smaller one (a watch event, a test's handful of
#: resources) would pay more for the full collection that starts the pause than the pause saves
LARGE_PASS = 10_000

class _Pause:
    """The collector is process-wide: passes running at once in several threads (a scan commit, an audit)
    share one pause. The first to enter starts it; the last to leave ends it."""

    lock = threading.Lock()
    holders = 0
    resume = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of one pass that allocates millions of acyclic records.

    Left on, each collection walks every live object and a messy estate keeps half a million findings
    alive: the collector costs a third of the pass. Merely paused, the first collection after it walks
    all that the pass allocated. So collect first (nothing cyclic is left to strand), pause, and at the
    end freeze what is alive: reference counting frees it as usual, the collector just never walks it.
    The next pass unfreezes first, so nothing stays out of the collector's sight for long. Passes that
    overlap in several threads share one pause (it ends when the last of them does).
    """
    with _Pause.lock:
        if _Pause.holders == 0:
            _Pause.resume = gc.isenabled()
            if _Pause.resume:
                gc.unfreeze()
                gc.collect()
                gc.disable()
        _Pause.holders += 1
    try:
        yield
    finally:
        with _Pause.lock:
            _Pause.holders -= 1
            if _Pause.holders == 0 and _Pause.resume:
                gc.freeze()
                gc.enable()


def gc_paused_if_large(items: Iterable[Any] | int) -> AbstractContextManager[Any]:
    """:func:`cyclic_gc_paused` for a pass over ``items`` (or that many items) of :data:`LARGE_PASS` or more,
    or of unknown length (a generator: a scan streaming its resources); a no-op context for a small one."""
    if isinstance(items, int):
        return cyclic_gc_paused() if items >= LARGE_PASS else nullcontext()
    if isinstance(items, Sized) and len(items) < LARGE_PASS:
        return nullcontext()
    return cyclic_gc_paused()
