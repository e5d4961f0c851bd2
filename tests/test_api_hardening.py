"""The HTTP front door under attack, over real sockets: DNS rebinding against a token-less loopback server,
empty and short bearer tokens, stalled headers and bodies; and the findings answer under load (its cache
and the garbage collector).

Every server is the real uvicorn app (BackgroundServer) over a real SQLite store holding the API estate;
requests go through httpx or, where a client library would not send them, a raw socket.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.audit import findings
from envlabel.service.core.clock import utcnow
from envlabel.service.core.gc_pause import LARGE_PASS, gc_paused_if_large
from envlabel.service.core.listing import FindingsCache
from envlabel.service.core.pipeline import commit_changes, commit_scan
from envlabel.service.core.query import Query
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.http.tokens import MIN_TOKEN_LENGTH
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import ADMIN_TOKEN, PROD_DB, READER_TOKEN, TOKENS, UNLABELED, make_config, populate, sha

PROD_ACCOUNT = "222222222222"
SHARED_ACCOUNT = "555555555555"  # no signal anywhere above it: the estate's one unlabeled finding
#: a short admin token whose hash IS configured: presenting it must still fail, because it is never compared
SHORT_ADMIN = "short-admin"
#: hang guard for raw sockets: the server must act long before it (nothing asserts on elapsed time)
GUARD_S = 30.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('hardening') / 'envlabel.db'}")
    populate(store)
    return store


@pytest.fixture(scope="module")
def open_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """No tokens, loopback, a short read deadline (so the timeout tests end quickly)."""
    config = make_config(str(tmp_path_factory.mktemp("unused") / "x.db"), read_timeout="300ms")
    with BackgroundServer(config, store) as server:
        yield server


@pytest.fixture(scope="module")
def secured(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    tokens = [*TOKENS, {"name": "tiny", "role": "admin", "sha256": sha(SHORT_ADMIN)}]
    config = make_config(str(tmp_path_factory.mktemp("unused") / "x.db"), tokens=tokens)
    with BackgroundServer(config, store) as server:
        yield server


def sandbox_the_production_account() -> dict[str, Any]:
    return {"target": PROD_ACCOUNT, "environment": "sandbox", "reason": "rebound", "author": "evil.example"}


def assert_production_untouched(url: str, headers: dict[str, str] | None = None) -> None:
    """The attack changed nothing: no override, the account is production and deleting in it is denied."""
    with httpx.Client(base_url=url, headers=headers or {}) as client:
        overrides = client.get("/v1/overrides", params={"all": "true"}).json()
        assert not [o for o in [*overrides["overrides"], *overrides["events"]] if o["target"] == PROD_ACCOUNT]
        assert client.get("/v1/label", params={"target": PROD_ACCOUNT}).json()["environment"] == "production"
        check = client.post("/v1/check", json={"target": PROD_ACCOUNT, "action": "lambda:DeleteFunction"}).json()
        assert (check["environment"], check["decision"]) == ("production", "deny"), check


def error_of(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error, body
    message: str = body["message"]
    return message


def raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as sock:
        sock.sendall(request)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_body(reply: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# -- 1. no tokens: loopback in every sense -------------------------------------------------------------
def test_dns_rebinding_cannot_set_an_override(open_server: BackgroundServer) -> None:
    url = open_server.url
    rebound = httpx.post(f"{url}/v1/overrides", json=sandbox_the_production_account(),
                         headers={"Host": "evil.example"})
    message = error_of(rebound, 421, "misdirected request")
    assert "evil.example" in message and "127.0.0.1" in message and "api.tokens" in message
    with_port = httpx.post(f"{url}/v1/overrides", json=sandbox_the_production_account(),
                           headers={"Host": f"evil.example:{open_server.port}"})
    error_of(with_port, 421, "misdirected request")
    # the browser sends the attacker page's Origin even when the Host is right (a page on a rebound name
    # that resolves straight to 127.0.0.1, or a form posted cross-site)
    for origin in ("http://evil.example", f"http://evil.example:{open_server.port}", "null"):
        cross = httpx.post(f"{url}/v1/overrides", json=sandbox_the_production_account(), headers={"Origin": origin})
        assert origin in error_of(cross, 403, "cross-origin request")
    removal = httpx.delete(f"{url}/v1/overrides", params={"target": PROD_ACCOUNT},
                           headers={"Origin": "http://evil.example"})
    error_of(removal, 403, "cross-origin request")
    assert_production_untouched(url)


@pytest.mark.parametrize("path", ["/mcp", "/metrics", "/healthz", "/readyz", "/openapi.json", "/v1/label",
                                  "/v1/findings", "/no/such/route"])
def test_every_path_refuses_a_foreign_host(open_server: BackgroundServer, path: str) -> None:
    response = httpx.get(f"{open_server.url}{path}", params={"target": PROD_DB},
                         headers={"Host": "envlabel.attacker.example"})
    error_of(response, 421, "misdirected request")


def test_a_missing_or_doubled_host_is_refused(open_server: BackgroundServer) -> None:
    status, body = status_and_body(raw(open_server.port, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert (status, body["error"]) == (421, "misdirected request") and "no Host header" in body["message"]
    doubled = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    status, body = status_and_body(raw(open_server.port, doubled))
    assert status in (400, 421), body  # the HTTP parser may refuse it first; it is never served


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:{port}", "127.0.0.1", "127.0.0.1:{port}", "127.9.9.9",
                                  "[::1]", "[::1]:{port}"])
def test_loopback_names_are_served(open_server: BackgroundServer, host: str) -> None:
    response = httpx.get(f"{open_server.url}/v1/label", params={"target": PROD_DB},
                         headers={"Host": host.format(port=open_server.port)})
    assert response.status_code == 200 and response.json()["environment"] == "production"


def test_local_pages_and_programs_may_write(open_server: BackgroundServer) -> None:
    for headers in ({}, {"Origin": "http://localhost:3000"}, {"Origin": f"http://127.0.0.1:{open_server.port}"}):
        check = httpx.post(f"{open_server.url}/v1/check", json={"target": PROD_DB, "action": "delete"},
                           headers=headers)
        assert check.status_code == 200 and check.json()["decision"] == "deny"
    # a cross-origin read is not refused: the browser does not let the page read the answer (no CORS headers)
    assert httpx.get(f"{open_server.url}/healthz", headers={"Origin": "http://evil.example"}).status_code == 200


def test_mcp_agrees_with_the_front_door(open_server: BackgroundServer) -> None:
    """One rule for /mcp too: a loopback Host without a port is served, a foreign Origin is refused in JSON."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    listed = httpx.post(f"{open_server.url}/mcp", json=call, headers={**accept, "Host": "localhost"})
    assert listed.status_code == 200, listed.text
    assert "check_action" in {tool["name"] for tool in listed.json()["result"]["tools"]}
    cross = httpx.post(f"{open_server.url}/mcp", json=call, headers={**accept, "Origin": "http://evil.example"})
    error_of(cross, 403, "cross-origin request")


def test_with_tokens_host_and_origin_are_left_alone(secured: BackgroundServer) -> None:
    url = secured.url
    # behind a proxy or under a DNS name a token server is reached by any name; a page cannot send the token
    reader = {"Authorization": f"Bearer {READER_TOKEN}", "Host": "envlabel.internal", "Origin": "https://ui.internal"}
    assert httpx.get(f"{url}/v1/label", params={"target": PROD_DB}, headers=reader).status_code == 200
    assert httpx.post(f"{url}/v1/check", json={"target": PROD_DB, "action": "get"}, headers=reader).status_code == 200
    rebound = httpx.post(f"{url}/v1/overrides", json=sandbox_the_production_account(),
                         headers={"Host": "evil.example"})
    error_of(rebound, 401, "unauthorized")


# -- 2. tokens as presented -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("authorization", "said"), [
    ("Bearer ", "empty"), ("Bearer      ", "empty"), ("Bearer", "empty"), ("bearer \t", "empty"),
    (f"Bearer {SHORT_ADMIN}", "too short"), ("Bearer x", "too short"),
    (f"Bearer {'a' * (MIN_TOKEN_LENGTH - 1)}", "too short"),
])
def test_empty_and_short_tokens_are_refused_as_such(secured: BackgroundServer, authorization: str, said: str) -> None:
    """The hash of ``short-admin`` is configured with role admin: it is refused all the same, never compared.
    Sent over a raw socket: httpx will not send a header value that ends in whitespace."""
    body = json.dumps(sandbox_the_production_account()).encode()
    request = (f"POST /v1/overrides HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    reply = raw(secured.port, request.encode() + body)
    status, answer = status_and_body(reply)
    assert (status, answer["error"]) == (401, "unauthorized") and said in answer["message"], answer
    assert b"www-authenticate: bearer" in reply.lower()
    assert_production_untouched(secured.url, {"Authorization": f"Bearer {READER_TOKEN}"})


def test_a_long_enough_token_is_compared(secured: BackgroundServer) -> None:
    unknown = httpx.get(f"{secured.url}/v1/label", params={"target": PROD_DB},
                        headers={"Authorization": f"Bearer {'x' * MIN_TOKEN_LENGTH}"})
    assert "not configured" in error_of(unknown, 401, "unauthorized")
    admin = httpx.get(f"{secured.url}/v1/overrides", headers={"Authorization": f"Bearer  {ADMIN_TOKEN}"})
    assert admin.status_code == 200


# -- 7. read deadlines ----------------------------------------------------------------------------------------
def test_a_connection_that_sends_nothing_is_closed(open_server: BackgroundServer) -> None:
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=GUARD_S) as sock:
        assert read_to_close(sock) == b""  # closed by the server, silently: no request had begun


def test_half_a_header_line_gets_408_and_is_closed(open_server: BackgroundServer) -> None:
    status, body = status_and_body(raw(open_server.port, b"GET /v1/label?target=2222222"))
    assert (status, body["error"]) == (408, "request timeout") and "api.read_timeout" in body["message"]


def test_headers_without_their_end_get_408(open_server: BackgroundServer) -> None:
    status, _ = status_and_body(raw(open_server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1"))
    assert status == 408


def test_a_stalled_body_gets_408_and_is_closed(open_server: BackgroundServer) -> None:
    head = (b"POST /v1/check HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n")
    status, body = status_and_body(raw(open_server.port, head + b'{"target": "2222'))
    assert (status, body["error"]) == (408, "request timeout") and "body" in body["message"]
    status, body = status_and_body(raw(open_server.port, head.replace(b"/v1/check", b"/v1/overrides")))
    assert status == 408  # before the admin route ever runs
    assert_production_untouched(open_server.url)


def test_a_kept_alive_connection_that_starts_a_request_and_stalls_is_closed(open_server: BackgroundServer) -> None:
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=GUARD_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"ok"' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /heal")  # the next request's first bytes cancel uvicorn's keep-alive timer
        status, _ = status_and_body(read_to_close(sock))
    assert status == 408


def test_read_timeout_is_range_checked(tmp_path: Path) -> None:
    from envlabel.errors import ConfigError

    for bad in ("0s", "50ms", "11m"):
        with pytest.raises(ConfigError, match="read_timeout"):
            make_config(str(tmp_path / "x.db"), read_timeout=bad)


# -- the OpenAPI document lists what the front door answers ---------------------------------------------------
def test_openapi_lists_the_front_door_answers(open_server: BackgroundServer, secured: BackgroundServer) -> None:
    spec = httpx.get(f"{open_server.url}/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "421" in statuses and "401" not in statuses, (method, path)
            if method in ("post", "delete"):
                assert {"403", "408", "413"} <= statuses, (method, path)
    tokened = httpx.get(f"{secured.url}/openapi.json").json()["paths"]
    assert "401" in tokened["/v1/label"]["get"]["responses"] and "421" not in tokened["/v1/label"]["get"]["responses"]
    assert "401" not in tokened["/healthz"]["get"]["responses"]
    assert "403" in tokened["/v1/overrides"]["post"]["responses"]


def test_405_names_the_allowed_methods(open_server: BackgroundServer) -> None:
    response = httpx.put(f"{open_server.url}/v1/overrides", json={})
    error_of(response, 405, "method not allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST", "DELETE"}


# -- 7. findings under load -----------------------------------------------------------------------------------
def test_findings_follow_every_change_at_once(open_server: BackgroundServer, store: Store) -> None:
    url = open_server.url

    def unlabeled() -> set[str]:
        body = httpx.get(f"{url}/v1/findings", params={"kind": "unlabeled"}).json()
        return {f["target"] for f in body["findings"]}

    assert SHARED_ACCOUNT in unlabeled()
    assert SHARED_ACCOUNT in unlabeled()  # the served-again answer
    override = {"target": SHARED_ACCOUNT, "environment": "sandbox", "reason": "shared assets are sandbox"}
    assert httpx.post(f"{url}/v1/overrides", json=override).status_code == 200
    assert SHARED_ACCOUNT not in unlabeled()
    undo = httpx.delete(f"{url}/v1/overrides", params={"target": SHARED_ACCOUNT, "reason": "undo"})
    assert undo.status_code == 200
    assert SHARED_ACCOUNT in unlabeled()
    # a scan committed by another writer (here: in process, not through the API) shows at once too
    now = utcnow()
    commit_scan(store, Taxonomy(), ScanResult("extra", [Resource("888888888888", "aws", "aws:account", "spare",
                                                                 None, {}, "org")]), now, now)
    assert "888888888888" in unlabeled()


def test_findings_cache_rule(tmp_path: Path) -> None:
    """Served again while the change mark holds and the answer is younger than its TTL; a change the mark
    cannot see (a watch event changing a tag but no label) shows once the TTL has passed."""
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    populate(store)
    query = Query(make_config(str(tmp_path / "envlabel.db")), store)
    now = [0.0]
    renders: list[int] = []

    def render(body: dict[str, Any]) -> bytes:
        renders.append(1)
        return orjson.dumps(body)

    cache = FindingsCache(query, render, ttl_s=5.0, clock=lambda: now[0])
    first = cache.payload()
    assert cache.payload() is first and len(renders) == 1
    # a tag value no environment knows: an unrecognized finding, the label (unknown) and its history unchanged
    bucket = Resource(UNLABELED, "aws", "s3:bucket", "shared-assets", "555555555555", {"env": "mystery"},
                      "555555555555/global")
    assert commit_changes(store, Taxonomy(), "aws", [bucket]) == 0
    assert cache.payload() is first
    now[0] = 5.0
    fresh = orjson.loads(cache.payload())["findings"]
    assert any(f["kind"] == "unrecognized" and f["target"] == UNLABELED for f in fresh) and len(renders) == 2


def test_identical_concurrent_findings_requests_compute_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    populate(store)
    query = Query(make_config(str(tmp_path / "envlabel.db")), store)
    renders: list[int] = []

    def render(body: dict[str, Any]) -> bytes:
        renders.append(1)
        return orjson.dumps(body)

    cache = FindingsCache(query, render, clock=lambda: 0.0)
    start = threading.Barrier(6)
    answers: list[bytes] = []

    def ask() -> None:
        start.wait()
        answers.append(cache.payload(severity="medium"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 6 and len(set(answers)) == 1 and len(renders) == 1


def test_a_small_audit_runs_no_full_collection(store: Store, tmp_path: Path) -> None:
    """The pause (and the full collection that starts it) is for large passes only."""
    query = Query(make_config(str(tmp_path / "x.db")), store)
    gc.unfreeze()
    assert findings(query)
    # a pause ends by freezing every live object (and began with a full collection): none happened
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_overlapping_large_passes_share_one_pause() -> None:
    assert gc.isenabled()
    with gc_paused_if_large(LARGE_PASS):
        with gc_paused_if_large(LARGE_PASS * 2):
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pass is still running
    assert gc.isenabled()
    with gc_paused_if_large(LARGE_PASS - 1), gc_paused_if_large([1, 2, 3]):
        assert gc.isenabled()
    gc.unfreeze()


def test_the_h11_fallback_has_the_header_deadline_too(store: Store, tmp_path: Path) -> None:
    """uvicorn falls back to h11 where httptools is missing; the deadline is written for both."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from envlabel.service.daemon.read_deadline import protocol_with_read_deadline
    from envlabel.service.daemon.server import build_app

    app = build_app(make_config(str(tmp_path / "x.db")), store)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # connections wait in the backlog until uvicorn accepts them: no readiness polling
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                               http=protocol_with_read_deadline(0.3, H11Protocol)))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        try:
            status, body = status_and_body(raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
            assert (status, body["error"]) == (408, "request timeout")
            ok = raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200")
        finally:
            server.should_exit = True
            thread.join(GUARD_S)


def test_a_large_findings_answer_is_sent_gzipped_to_a_client_that_accepts_it(tmp_path: Path) -> None:
    """The same findings either way; compressed (once, then served again) only when the client says it accepts
    gzip, so a loop of dashboard requests moves a tenth of the bytes."""
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    populate(store)
    now = utcnow()
    spares = [Resource(f"{800000000000 + i}", "aws", "aws:account", f"spare-{i}", None, {}, "org") for i in range(300)]
    commit_scan(store, Taxonomy(), ScanResult("spares", spares), now, now)
    with BackgroundServer(make_config(str(tmp_path / "x.db")), store) as server:
        plain = httpx.get(f"{server.url}/v1/findings", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers and len(plain.content) > 16 * 1024
        for _ in range(2):  # computed, then served again from the cache
            packed = httpx.get(f"{server.url}/v1/findings", headers={"accept-encoding": "gzip"})
            assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "accept-encoding"
            assert int(packed.headers["content-length"]) < len(plain.content) / 5
            assert packed.json() == plain.json()
        small = httpx.get(f"{server.url}/v1/findings", params={"kind": "stale"}, headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in small.headers and small.status_code == 200
    store.close()
