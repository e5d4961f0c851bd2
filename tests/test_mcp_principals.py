"""MCP's check_action for principals, through the official MCP client over streamable HTTP at ``/mcp`` of the
real server: the caller is the token's principal (a claim only narrows), and an answer that carries an approval
request tells the agent to stop, name the request to its operator and retry the same call once approved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.api_callers import AGENT, DEPLOYER, LEAD, bearer, served, still_there
from tests.api_estate import PROD_DB, STAGING_DB


async def call(url: str, token: str, arguments: dict[str, Any],
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with (httpx2.AsyncClient(headers=bearer(token, **(headers or {}))) as http,
                Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client):
        result = await client.call_tool("check_action", arguments)
    assert not result.is_error and result.structured_content is not None, result
    return dict(result.structured_content)


def test_check_action_answers_for_the_token_principal_with_the_approval_to_ask_for(tmp_path: Path) -> None:
    with served(tmp_path) as (url, store):
        arguments = {"target": STAGING_DB, "action": "rds:DeleteDBInstance",
                     "parameters": {"SkipFinalSnapshot": True}}
        answer = anyio.run(call, url, AGENT, arguments)
        assert (answer["principal"], answer["decision"]) == ("agent", "require_approval")
        approval_id = answer["approval"]["id"]
        assert approval_id in answer["instruction"] and answer["instruction"].startswith("STOP")
        assert "retry exactly the same call" in answer["instruction"]

        claimed = anyio.run(call, url, DEPLOYER, {"target": PROD_DB, "action": "rds:ModifyDBInstance"},
                            {"X-Envlabel-Principal": "admin-bot"})
        assert (claimed["principal"], claimed["claimed_principal"], claimed["decision"]) == (
            "ci-deployer", "admin-bot", "deny")
        assert "instruction" not in claimed

        approved = httpx.post(f"{url}/v1/approvals/{approval_id}/approve", json={"reason": "ok"}, headers=bearer(LEAD))
        assert approved.status_code == 200, approved.text
        once = anyio.run(call, url, AGENT, arguments)
        assert (once["decision"], once["rule"]) == ("allow", f"approval:{approval_id}")
        assert "instruction" not in once
        assert still_there(store, PROD_DB)
