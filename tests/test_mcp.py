"""The MCP server through the official MCP client: over stdio (``envlabel mcp`` as a subprocess) and over
streamable HTTP at ``/mcp`` of a real uvicorn server with bearer tokens."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from envlabel.config import Config
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.api_estate import (
    NEVER_SEEN,
    PROD_DB,
    READER_TOKEN,
    SANDBOX_DB,
    STAGING_DB,
    STALE_DB,
    TOKENS,
    make_config,
    populate,
)

TOOLS = {"get_environment", "check_action", "list_resources", "list_findings"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = make_config(str(tmp_path_factory.mktemp("mcp") / "envlabel.db"), tokens=TOKENS)
    populate(open_store(config.store))
    return config


@pytest.fixture(scope="module")
def config_file(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp-config") / "envlabel.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    return path


@pytest.fixture(scope="module")
def mcp_url(config: Config) -> Iterator[str]:
    with BackgroundServer(config, open_store(config.store)) as server:
        yield f"{server.url}/mcp"


async def exercise(client: Client) -> None:
    """What every transport must answer the same way."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    described = {name: " ".join((tool.description or "").split()) for name, tool in tools.items()}
    assert "require_approval: STOP. Do not perform the action" in described["check_action"]
    assert "treat it as production" in described["get_environment"]

    prod = (await client.call_tool("get_environment", {"target": PROD_DB})).structured_content
    twin = (await client.call_tool("get_environment", {"target": STAGING_DB})).structured_content
    assert prod is not None and twin is not None
    assert (prod["environment"], twin["environment"]) == ("production", "staging")
    assert (prod["name"], prod["kind"]) == (twin["name"], twin["kind"])

    for target, action, decision in [(PROD_DB, "rds:DeleteDBInstance", "deny"),
                                     (STAGING_DB, "rds:DeleteDBInstance", "require_approval"),
                                     (SANDBOX_DB, "rds:DeleteDBInstance", "allow"),
                                     (NEVER_SEEN, "rds:ModifyDBInstance", "require_approval"),
                                     (STALE_DB, "rds:DeleteDBInstance", "deny")]:
        result = await client.call_tool("check_action", {"target": target, "action": action})
        body = result.structured_content
        assert not result.is_error and body is not None
        assert body["decision"] == decision, (target, body["reasons"])
    staging = (await client.call_tool("check_action", {"target": STAGING_DB, "action": "delete"})).structured_content
    assert staging is not None and staging["approvers"] == ["team-lead"]

    bad = await client.call_tool("get_environment", {"target": "orders-db"})
    assert bad.is_error and "accepted target forms" in bad.content[0].text  # type: ignore[union-attr]

    page = (await client.call_tool("list_resources", {"environment": "staging", "limit": 2})).structured_content
    assert page is not None and len(page["resources"]) == 2 and page["next_cursor"]
    rest = (await client.call_tool("list_resources", {"environment": "staging", "cursor": page["next_cursor"]}))
    assert rest.structured_content is not None
    ids = [r["target"] for r in page["resources"] + rest.structured_content["resources"]]
    assert STAGING_DB in ids and len(ids) == len(set(ids))
    wrong = await client.call_tool("list_resources", {"environment": "prod"})
    assert wrong.is_error and "staging" in wrong.content[0].text  # type: ignore[union-attr]

    findings = (await client.call_tool("list_findings", {"kind": "unlabeled"})).structured_content
    assert findings is not None and {f["kind"] for f in findings["findings"]} == {"unlabeled"}


def test_stdio(config_file: Path) -> None:
    envlabel = str(Path(sys.executable).parent / "envlabel")
    server = StdioServerParameters(command=envlabel, args=["mcp", "--config", str(config_file)])

    async def main() -> None:
        async with Client(server) as client:
            await exercise(client)

    anyio.run(main)


def test_streamable_http_with_token(mcp_url: str) -> None:
    async def main() -> None:
        headers = {"Authorization": f"Bearer {READER_TOKEN}"}
        async with (httpx2.AsyncClient(headers=headers) as http,
                    Client(streamable_http_client(mcp_url, http_client=http)) as client):
            await exercise(client)

    anyio.run(main)


def test_streamable_http_needs_a_token(mcp_url: str) -> None:
    response = httpx.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401 and "api.tokens" in response.json()["message"]
