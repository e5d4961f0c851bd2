"""Every ``ENVLABEL_`` variable the docs name works, and no other ``ENVLABEL_`` variable breaks loading.

The docs are read for variable names, so a newly documented variable fails
``test_every_documented_variable_is_tested`` until a case here exercises it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from envlabel.client import Client, timeout_from_env
from envlabel.config import config_path, load_config
from envlabel.guard import fail_open
from envlabel.service.daemon.webhooks import endpoints_from_config

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_IN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "helm").rglob("*.*"))]
#: variables named in the docs that are not envlabel settings: the test suite's own, a misspelling shown as one
NOT_SETTINGS = {"ENVLABEL_TEST_POSTGRES_URL", "ENVLABEL_STALE_AFTR"}


def documented_variables() -> set[str]:
    names: set[str] = set()
    for path in DOCUMENTED_IN:
        names |= set(re.findall(r"\bENVLABEL_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    return names - NOT_SETTINGS


def _config_case(variable: str, value: str, check: Callable[..., bool], **more: str) -> Callable[[], None]:
    def run() -> None:
        config = load_config(environ={variable: value, **more})
        assert check(config), (variable, value)
    return run


def _config_file(tmp: Path) -> None:
    path = tmp / "elsewhere.yaml"
    path.write_text("stale_after: 3h\n")
    assert config_path(environ={"ENVLABEL_CONFIG": str(path)}) == path
    assert load_config(environ={"ENVLABEL_CONFIG": str(path)}).stale_after == timedelta(hours=3)


def _sdk(variable: str) -> Callable[[], None]:
    def run() -> None:
        # an SDK setting in the daemon's environment is not config: loading ignores it
        load_config(environ={variable: "http://127.0.0.1:9" if variable == "ENVLABEL_URL" else "1"})
    return run


def _principal() -> None:
    """The SDK's claim of who acts: a header, not config (loading ignores it and warns of nothing)."""
    load_config(environ={"ENVLABEL_PRINCIPAL": "agent-7"})
    os.environ["ENVLABEL_PRINCIPAL"] = "agent-7"
    try:
        with Client("http://127.0.0.1:9") as client:
            assert client._http.headers["x-envlabel-principal"] == "agent-7"
    finally:
        del os.environ["ENVLABEL_PRINCIPAL"]


def _mode() -> None:
    """Shadow mode: config ``mode`` for the daemon and the CLI, and the header the SDK sends from it."""
    assert load_config(environ={"ENVLABEL_MODE": "audit"}).mode == "audit"
    os.environ["ENVLABEL_MODE"] = "audit"
    try:
        with Client("http://127.0.0.1:9") as client:
            assert client._http.headers["x-envlabel-mode"] == "audit"
    finally:
        del os.environ["ENVLABEL_MODE"]


def _sdk_timeout() -> None:
    load_config(environ={"ENVLABEL_TIMEOUT": "2.5"})  # not config either
    assert timeout_from_env({"ENVLABEL_TIMEOUT": "2.5"}) == 2.5
    assert timeout_from_env({"ENVLABEL_TIMEOUT": "3s"}) == 3.0
    assert timeout_from_env({}) == 5.0


CASES: dict[str, Callable[..., None]] = {
    "ENVLABEL_CONFIG": _config_file,
    "ENVLABEL_STORE": _config_case("ENVLABEL_STORE", "sqlite:////tmp/x.db", lambda c: c.store == "sqlite:////tmp/x.db"),
    "ENVLABEL_STORE_POOL_SIZE": _config_case("ENVLABEL_STORE_POOL_SIZE", "4", lambda c: c.store_pool_size == 4),
    "ENVLABEL_STALE_AFTER": _config_case("ENVLABEL_STALE_AFTER", "2h",
                                         lambda c: c.stale_after == timedelta(hours=2)),
    "ENVLABEL_SCHEDULE__INTERVAL": _config_case("ENVLABEL_SCHEDULE__INTERVAL", "5m",
                                                lambda c: c.schedule.interval == timedelta(minutes=5)),
    "ENVLABEL_SCHEDULE__JITTER": _config_case("ENVLABEL_SCHEDULE__JITTER", "10s",
                                              lambda c: c.schedule.jitter == timedelta(seconds=10)),
    "ENVLABEL_API__TOKENS": _config_case(
        "ENVLABEL_API__TOKENS", f"[{{name: ci, role: reader, sha256: {'a' * 64}}}]",
        lambda c: [t.name for t in c.api.tokens] == ["ci"]),
    "ENVLABEL_ENVIRONMENTS": _config_case(
        "ENVLABEL_ENVIRONMENTS", "[production, dr, staging, sandbox]",
        lambda c: c.environments == ["production", "dr", "staging", "sandbox"] and c.policy["dr"]["delete"] == "deny",
        ENVLABEL_POLICY__DR="{read: allow, create: deny, modify: deny, delete: deny}"),
    "ENVLABEL_POLICY__DR": _config_case(
        "ENVLABEL_POLICY__DR", "{read: allow, create: deny, modify: deny, delete: deny}",
        lambda c: c.policy["dr"]["create"] == "deny", ENVLABEL_ENVIRONMENTS="[production, dr, staging, sandbox]"),
    "ENVLABEL_URL": _sdk("ENVLABEL_URL"),
    "ENVLABEL_TOKEN": _sdk("ENVLABEL_TOKEN"),
    "ENVLABEL_FAIL_OPEN": _sdk("ENVLABEL_FAIL_OPEN"),
    "ENVLABEL_TIMEOUT": _sdk_timeout,
    "ENVLABEL_PRINCIPAL": _principal,
    "ENVLABEL_MODE": _mode,
    # the docs' example of a webhook's secret_env: not config, read by the webhook sender
    "ENVLABEL_WEBHOOK_SECRET": lambda: None,
}


def test_every_documented_variable_is_tested() -> None:
    assert documented_variables() <= set(CASES), f"add a case for {sorted(documented_variables() - set(CASES))}"


@pytest.mark.parametrize("variable", sorted(CASES))
def test_documented_variable(variable: str, tmp_path: Path) -> None:
    case = CASES[variable]
    case(tmp_path) if variable == "ENVLABEL_CONFIG" else case()


def test_sdk_variables_reach_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLABEL_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ENVLABEL_TOKEN", "s3cret")
    monkeypatch.setenv("ENVLABEL_FAIL_OPEN", "1")
    client = Client()
    assert client.url == "http://127.0.0.1:9"
    assert client._http.headers["authorization"] == "Bearer s3cret"
    assert fail_open()
    client.close()


def test_webhook_secret_from_its_variable() -> None:
    config = load_config(environ={"ENVLABEL_WEBHOOKS": "[{url: 'http://127.0.0.1:9/h', "
                                                        "secret_env: ENVLABEL_WEBHOOK_SECRET}]"})
    endpoints = endpoints_from_config(config.webhooks, {"ENVLABEL_WEBHOOK_SECRET": "k"})
    assert [e.url for e in endpoints] == ["http://127.0.0.1:9/h"]


def test_unrelated_variables_never_break_loading(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "envlabel.config"):
        config = load_config(environ={"ENVLABEL_CMD": "rm -rf /", "ENVLABEL_HOME": "/x", "ENVLABEL_": "",
                                      "ENVLABEL_TEST_POSTGRES_URL": "postgresql://x/y"})
    assert config.stale_after == timedelta(hours=24)
    assert caplog.records == []


@pytest.mark.parametrize(("variable", "nearest"), [("ENVLABEL_STALE_AFTR", "ENVLABEL_STALE_AFTER"),
                                                   ("ENVLABEL_ENVIRONMENT", "ENVLABEL_ENVIRONMENTS"),
                                                   ("ENVLABEL_TOKN", "ENVLABEL_TOKEN")])
def test_misspelt_key_is_a_warning_naming_the_key(variable: str, nearest: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "envlabel.config"):
        config = load_config(environ={variable: "2h"})
    assert config.stale_after == timedelta(hours=24)  # ignored, not applied
    assert [r.getMessage() for r in caplog.records] == [
        f"{variable} is not an envlabel setting and is ignored; did you mean {nearest}?"]


def test_cli_with_a_busy_environment(tmp_path: Path) -> None:
    """The real command, with the documented pool size, a shell's stray variable and a typo set."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")} | {
        "ENVLABEL_STORE": f"sqlite:///{tmp_path / 'e.db'}", "ENVLABEL_STORE_POOL_SIZE": "5",
        "ENVLABEL_CMD": "deploy", "ENVLABEL_STALE_AFTR": "1h"}
    done = subprocess.run([str(Path(sys.executable).with_name("envlabel")), "validate"], env=environ,
                          capture_output=True, text=True, cwd=tmp_path, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "configuration ok" in done.stdout
    assert "ENVLABEL_STALE_AFTR is not an envlabel setting and is ignored; did you mean ENVLABEL_STALE_AFTER?" \
        in done.stderr
