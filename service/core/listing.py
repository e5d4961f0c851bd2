"""Listings shared by the HTTP API and the MCP tools: labeled resources (paginated) and audit findings.

Pages are keyed by resource id (the store lists in id order), so a cursor stays valid while
scans add or remove resources: the next page starts after the last id returned. The cursor
is that id, base64url-encoded so it is opaque and safe in a query string. A page is at most
:data:`MAX_LIMIT` labels, so a listing costs the same however large the estate is.

Findings read the whole estate, so :class:`FindingsCache` (``GET /v1/findings``) keeps each
rendered answer and serves it again while it is still the answer:

- the store's change mark (:func:`change_mark`) is what it was when the answer was computed:
  the newest label-history entry (every label change, override or watch event that relabels
  writes one), the newest scan of each source (every scan, complete or not), and the overrides;
- and the answer is younger than its time to live: :data:`FINDINGS_TTL_S` seconds, or ten times
  what computing it took if that is longer. The TTL bounds what the mark cannot see: findings
  that change with the clock alone (a label going stale, an override lapsing) and a watch event
  that changed a resource but no label.

Requests that find no fresh answer compute one at a time, so concurrent identical requests
compute once. A client that accepts gzip gets the answer compressed, compressed once per answer
and kept beside it: a findings answer of an estate is tens of MiB of repetitive JSON, and sending
it ten times smaller is what keeps a loop of findings requests from crowding out label lookups.

Answers are kept up to :data:`CACHE_BUDGET` bytes in all (the oldest computed goes first),
except that the newest is always kept, however large: it is the one a loop of identical
requests asks for again.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envlabel.model import UNKNOWN
from envlabel.service.core.clock import utcnow
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.query import Query, label_json

PROVIDERS = ("aws", "gcp", "kubernetes")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: seconds a findings answer is served again from an unchanged store (the clock alone may change it)
FINDINGS_TTL_S = 5.0
#: an answer is also reused for this many times as long as it took to compute: at most a tenth of the
#: server's time goes to recomputing findings nobody changed, however large the estate
REUSE_FACTOR = 10
#: bytes of rendered findings answers kept, all filters together (beside the newest, which is always kept)
CACHE_BUDGET = 64 * 2**20
#: answers at least this large are sent gzip-compressed to a client that accepts it; smaller ones cost more
#: to compress than they save
GZIP_FROM = 16 * 1024
#: gzip's fastest level: JSON findings still shrink about tenfold, at a fraction of the default level's cost
GZIP_LEVEL = 1


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor", "not a cursor this server issued; pass next_cursor from the previous "
                                       "page unchanged, or omit it to start from the beginning") from None


def list_resources(query: Query, environment: str | None = None, provider: str | None = None,
                   limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """``{"resources": [label JSON...], "next_cursor": str | None}``; raises InvalidRequest on bad filters."""
    environments = (*query.config.environments, UNKNOWN)
    if environment is not None and environment not in environments:
        raise InvalidRequest("environment", f"{environment!r} is not one of {', '.join(environments)}")
    if provider is not None and provider not in PROVIDERS:
        raise InvalidRequest("provider", f"{provider!r} is not one of {', '.join(PROVIDERS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit", f"must be between 1 and {MAX_LIMIT}; page with next_cursor")
    after = decode_cursor(cursor) if cursor else ""
    rows = query.store.list_labels(environment=environment, provider=provider, after=after, limit=limit + 1)
    page = rows[:limit]
    now = utcnow()
    return {
        "resources": [label_json(s.resource.id, s, s.resolution, query.is_stale(s, now)) for s in page],
        "next_cursor": encode_cursor(page[-1].resource.id) if len(rows) > limit else None,
    }


def list_findings(query: Query, kind: str | None = None, severity: str | None = None,
                  provider: str | None = None) -> dict[str, Any]:
    """``{"findings": [finding JSON...]}`` from the audit; raises InvalidRequest on a bad filter."""
    from envlabel.service.core.audit import findings  # the audit reads the whole estate: load it when asked

    check_finding_filters(kind, severity, provider)
    return {"findings": findings(query, kind=kind, severity=severity, provider=provider)}


def check_finding_filters(kind: str | None, severity: str | None, provider: str | None) -> None:
    """Raise InvalidRequest naming the first bad filter and its accepted values."""
    from envlabel.service.core.audit import check_filters

    for field, only in (("kind", (kind, None, None)), ("severity", (None, severity, None)),
                        ("provider", (None, None, provider))):
        try:
            check_filters(*only)
        except ValueError as exc:
            raise InvalidRequest(field, str(exc)) from None


def change_mark(query: Query) -> tuple[object, ...]:
    """What differs whenever stored labels, scans or overrides have changed: three small indexed reads."""
    store = query.store
    return store.history_mark(), tuple((s["source"], s["id"]) for s in store.last_scans()), store.overrides()


Filters = tuple[str | None, str | None, str | None]


@dataclass(slots=True)
class _Answer:
    mark: tuple[object, ...]
    expires: float
    payload: bytes
    #: the payload gzip-compressed, made when a client first accepts it
    gzipped: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.gzipped or b"")


class FindingsCache:
    """Rendered findings answers, served again while the store is unchanged and the answer is young (the rule is
    in the module docstring). ``render`` turns ``{"findings": [...]}`` into the bytes a face sends."""

    def __init__(self, query: Query, render: Callable[[dict[str, Any]], bytes], *, ttl_s: float = FINDINGS_TTL_S,
                 budget: int = CACHE_BUDGET, clock: Callable[[], float] = time.monotonic) -> None:
        self.query = query
        self.render = render
        self.ttl_s = ttl_s
        self.budget = budget
        self.clock = clock
        self._answers: OrderedDict[Filters, _Answer] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()  # guards _answers and _held
        self._computing = threading.Lock()  # one audit at a time: identical requests wait and share it

    def payload(self, kind: str | None = None, severity: str | None = None, provider: str | None = None) -> bytes:
        """The rendered findings for these filters; raises InvalidRequest on a bad filter."""
        return self.encoded(kind, severity, provider)[0]

    def encoded(self, kind: str | None = None, severity: str | None = None, provider: str | None = None, *,
                gzip_ok: bool = False) -> tuple[bytes, str | None]:
        """(bytes, content encoding) of the findings for these filters: gzip-compressed (``"gzip"``) when
        ``gzip_ok`` and the answer is large, else as rendered (``None``). Raises InvalidRequest on a bad filter."""
        answer = self._answer(kind, severity, provider)
        if not gzip_ok or len(answer.payload) < GZIP_FROM:
            return answer.payload, None
        if answer.gzipped is None:
            with self._computing:  # one compression per answer, however many clients ask at once
                if answer.gzipped is None:
                    answer.gzipped = gzip.compress(answer.payload, GZIP_LEVEL, mtime=0)
                    with self._lock:
                        self._held += len(answer.gzipped)
        return answer.gzipped, "gzip"

    def cached(self, kind: str | None = None, severity: str | None = None, provider: str | None = None, *,
               gzip_ok: bool = False) -> tuple[bytes, str | None] | None:
        """:meth:`encoded` when it is ready to send (three small indexed reads, nothing computed or compressed),
        else None: the event loop answers a loop of identical requests itself and sends only a miss to a worker
        thread, whose Python would otherwise hold the interpreter lock against the label lookups."""
        check_finding_filters(kind, severity, provider)
        answer = self._fresh((kind, severity, provider), change_mark(self.query))
        if answer is None:
            return None
        if not gzip_ok or len(answer.payload) < GZIP_FROM:
            return answer.payload, None
        return None if answer.gzipped is None else (answer.gzipped, "gzip")

    def _answer(self, kind: str | None, severity: str | None, provider: str | None) -> _Answer:
        check_finding_filters(kind, severity, provider)
        key = (kind, severity, provider)
        found = self._fresh(key, change_mark(self.query))
        if found is not None:
            return found
        with self._computing:
            mark = change_mark(self.query)  # read again: whoever held the lock may have computed this very answer
            found = self._fresh(key, mark)
            if found is not None:
                return found
            started = self.clock()
            payload = self.render(list_findings(self.query, kind, severity, provider))
            took = self.clock() - started
            answer = _Answer(mark, self.clock() + max(self.ttl_s, REUSE_FACTOR * took), payload)
            self._keep(key, answer)
            return answer

    def _fresh(self, key: Filters, mark: tuple[object, ...]) -> _Answer | None:
        with self._lock:
            answer = self._answers.get(key)
        if answer is None or answer.mark != mark or self.clock() >= answer.expires:
            return None
        return answer

    def _keep(self, key: Filters, answer: _Answer) -> None:
        with self._lock:
            old = self._answers.pop(key, None)
            self._held -= old.size if old else 0
            while self._answers and self._held + answer.size > self.budget:
                _, evicted = self._answers.popitem(last=False)  # the oldest computed goes first
                self._held -= evicted.size
            self._answers[key] = answer
            self._held += answer.size
