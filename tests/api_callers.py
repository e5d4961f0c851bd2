"""The API estate served with principals: tokens that carry principals and groups, grants, and helpers for the
principal, decision-log and approval tests (real BackgroundServer, real SQLite, httpx)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from envlabel.config import Config, config_from_dict
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import populate, sha

#: bearer tokens (each >= MIN_TOKEN_LENGTH): a deploy bot with a narrow grant, an agent, two human admins
DEPLOYER, AGENT, OPS, LEAD = ("ci-deployer-token-for-tests", "agent-reader-token-for-tests",
                              "ops-admin-token-for-tests-1", "lead-admin-token-for-tests-2")
TOKENS = [{"name": "ci", "role": "reader", "sha256": sha(DEPLOYER), "principal": "ci-deployer"},
          {"name": "agent", "role": "reader", "sha256": sha(AGENT), "groups": ["agents"]},
          {"name": "ops", "role": "admin", "sha256": sha(OPS), "principal": "alice"},
          {"name": "lead", "role": "admin", "sha256": sha(LEAD), "principal": "bob"}]
GRANTS = {"ci-deployer": {"sandbox": ["read", "create", "modify", "delete"], "staging": ["read", "create", "modify"],
                          "production": ["read"]},
          # full trust everywhere: what a reader token claiming it must never get
          "admin-bot": {env: ["read", "create", "modify", "delete"] for env in ("production", "staging", "sandbox")},
          "group:agents": {"sandbox": ["read", "create", "modify", "delete"], "staging": ["read", "modify", "delete"]}}


def caller_config(db_path: Path, *, tokens: bool = True, **extra: Any) -> Config:
    return config_from_dict({
        "store": f"sqlite:///{db_path}",
        "approvers": {"production": ["sre-oncall"], "staging": ["team-lead"]},
        "api": {"tokens": TOKENS} if tokens else {},
        "grants": GRANTS,
        "decisions": {"flush_interval": "10ms"},
        **extra,
    })


@contextmanager
def served(tmp_path: Path, *, tokens: bool = True, **extra: Any) -> Iterator[tuple[str, Store]]:
    """(base URL, store) of the real server over the API estate."""
    config = caller_config(tmp_path / "envlabel.db", tokens=tokens, **extra)
    store = open_store(config.store)
    populate(store)
    try:
        with BackgroundServer(config, store) as server:
            yield server.url, store
    finally:
        store.close()


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def check(client: httpx.Client, token: str | None, target: str, action: str, **more: Any) -> dict[str, Any]:
    """The check JSON (asserting a 200), with ``X-Envlabel-*`` headers from ``headers=``."""
    headers = {**(bearer(token) if token else {}), **more.pop("headers", {})}
    response = client.post("/v1/check", json={"target": target, "action": action, **more}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def still_there(store: Store, target: str) -> bool:
    """The resource is in the store and not tombstoned: nothing deleted it."""
    found = store.get(target)
    return found is not None and found.tombstoned_at is None


def eventually(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Poll until ``condition`` holds (readiness polling, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not true within {deadline_s}s")
        time.sleep(0.01)
