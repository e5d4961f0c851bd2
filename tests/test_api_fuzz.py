"""Every route of the HTTP API fuzzed against its own OpenAPI document (schemathesis), over a real socket.

The server is the real uvicorn app on loopback with a real SQLite store holding the API estate. For each
operation of the ``/openapi.json`` it serves, schemathesis generates valid and invalid parameters and
bodies (a bounded number of examples) and checks every answer: no 5xx, a status and a body the document
declares, the declared content type, and no hang (each call has a timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis import checks as schema_checks
from schemathesis.core.result import Ok

from envlabel.service.daemon.server import BackgroundServer, build_app
from envlabel.store import open_store
from tests.api_estate import make_config, populate

#: examples per operation: enough to reach each parameter's edge cases, bounded so the suite stays fast
EXAMPLES = 60
#: seconds any one answer may take before the call counts as a hang
CALL_TIMEOUT = 30
#: what every answer must satisfy. Not ``positive_data_acceptance``: the document types a target as a string,
#: and most strings are not a target in one of the accepted forms (their 400 names the forms), so a
#: schema-valid request may rightly be refused; the other answers must still be documented ones.
CHECKS = [schema_checks.not_a_server_error, schema_checks.status_code_conformance,
          schema_checks.content_type_conformance, schema_checks.response_headers_conformance,
          schema_checks.response_schema_conformance, schema_checks.negative_data_rejection]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def documented_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation the API documents, read from the app itself at collection time."""
    app = build_app(make_config(":memory:"), open_store("sqlite:///:memory:"))
    document: dict[str, Any] = app.app.openapi()  # type: ignore[attr-defined]
    return sorted((method.upper(), path) for path, item in document["paths"].items() for method in item)


OPERATIONS = documented_operations()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    store = open_store(f"sqlite:///{directory / 'envlabel.db'}")
    populate(store)
    config = make_config(str(directory / "unused.db"), max_batch=50, max_body_bytes=8192)
    try:
        with BackgroundServer(config, store) as server:
            yield server.url
    finally:
        store.close()


@pytest.fixture(scope="module")
def served_schema(served: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served}/openapi.json")


def test_the_served_document_lists_the_fuzzed_operations(served_schema: schemathesis.BaseSchema) -> None:
    served = []
    for result in served_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document describes every operation validly
        served.append((result.ok().method.upper(), result.ok().path))
    assert sorted(served) == OPERATIONS


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_route_answers_as_documented(served: str, served_schema: schemathesis.BaseSchema,
                                           method: str, path: str) -> None:
    operation = served_schema[path][method]

    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers_as_documented(case: Case[Any]) -> None:
        case.call_and_validate(base_url=served, checks=CHECKS, timeout=CALL_TIMEOUT)

    answers_as_documented()


@pytest.mark.parametrize("path", sorted({p for _, p in OPERATIONS}))
def test_a_method_a_route_does_not_take_is_405_with_allow(served: str, path: str) -> None:
    allowed = {m for m, p in OPERATIONS if p == path}
    for method in sorted(set(METHODS) - allowed):
        response = httpx.request(method, f"{served}{path}", timeout=CALL_TIMEOUT)
        assert response.status_code == 405, (method, path, response.text)
        assert set(response.headers["allow"].replace(" ", "").split(",")) >= allowed, response.headers
        assert response.json()["error"] == "method not allowed"


# -- /mcp: not in the OpenAPI document (JSON-RPC over streamable HTTP), fuzzed with JSON-RPC shapes of its own --
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
TOOLS = ("get_environment", "check_action", "list_resources", "list_findings", "no_such_tool")
_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=40))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
_arguments = st.fixed_dictionaries({}, optional={
    "target": st.sampled_from(["arn:aws:rds:us-east-1:222222222222:db:orders", "k8s://x/y/pods/z", ""]) | _json,
    "action": st.sampled_from(["rds:DeleteDBInstance", "delete", "x:Y"]) | _json,
    "contents": _json, "parameters": _json, "environment": _json, "kind": _json, "severity": _json,
    "provider": _json, "limit": _json, "after": _json})
_calls = st.fixed_dictionaries({"jsonrpc": st.just("2.0") | _json, "id": st.integers() | st.text(max_size=8),
                                "method": st.just("tools/call"),
                                "params": st.fixed_dictionaries({"name": st.sampled_from(TOOLS) | _json,
                                                                 "arguments": _arguments | _json})})
_requests = _calls | st.fixed_dictionaries({
    "jsonrpc": st.just("2.0"), "id": st.integers(),
    "method": st.sampled_from(["initialize", "tools/list", "ping", "resources/list", "prompts/get", "nope"]),
}, optional={"params": _json}) | _json


@given(body=_requests)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_mcp_answers_any_json_rpc_without_a_server_error(served: str, body: Any) -> None:
    """Tool calls with arguments of every JSON type, unknown tools and methods, and bodies that are not
    JSON-RPC at all: each is answered (a JSON-RPC error or a 4xx), none is a 5xx or hangs."""
    response = httpx.post(f"{served}/mcp", json=body, headers=MCP_HEADERS, timeout=CALL_TIMEOUT)
    assert response.status_code < 500, (body, response.status_code, response.text)
    if response.status_code == 200 and response.content:
        answer = response.json()
        assert answer.get("jsonrpc") == "2.0" and ("result" in answer or "error" in answer), answer


@given(raw=st.binary(max_size=300))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_mcp_refuses_bytes_that_are_not_json_without_a_server_error(served: str, raw: bytes) -> None:
    response = httpx.post(f"{served}/mcp", content=raw, headers=MCP_HEADERS, timeout=CALL_TIMEOUT)
    assert response.status_code < 500, (raw, response.status_code, response.text)
