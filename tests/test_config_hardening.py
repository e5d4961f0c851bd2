"""Hostile and careless configuration: bounded parsing, one clear line, exit 2, and nothing let in.

The loader runs through ``load_config`` and the real ``envlabel`` entry point (click's runner in process; a
real subprocess where only a real process shows a traceback or a port). ``envlabel token create`` is checked
by serving the token it prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from envlabel.config import DEFAULT_POLICY, EMPTY_SHA256, load_config
from envlabel.config_file import ALIAS_MESSAGE, MAX_BYTES, MAX_DEPTH
from envlabel.errors import ConfigError
from envlabel.service.cli import main
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.http.tokens import MIN_TOKEN_LENGTH
from envlabel.store import open_store
from tests.api_estate import PROD_DB, populate
from tests.conftest import free_port

ENVLABEL = str(Path(sys.executable).parent / "envlabel")
ALIAS_A = re.escape(ALIAS_MESSAGE.format(name="a"))
#: nine levels of nine: 387,420,489 strings once expanded
BILLION_LAUGHS = "\n".join(
    ['- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"- &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)])
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture(autouse=True)
def _no_stray_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./envlabel.yaml and no ENVLABEL_ variable of the caller's shell takes part."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ENVLABEL_")]:
        monkeypatch.delenv(name)


def clean_environ(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")} | extra


def invoke(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env or None, catch_exceptions=False)


# -- YAML: no aliases, bounded size and depth -------------------------------------------------------
def test_a_billion_laughs_file_is_refused_with_the_alias_message(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(f"store: sqlite:///{tmp_path / 'e.db'}\nsynonyms:\n  production:\n"
                    + "\n".join(f"    {line}" for line in BILLION_LAUGHS.splitlines()) + "\n")
    with pytest.raises(ConfigError, match=ALIAS_A) as caught:
        load_config(path, environ={})
    assert str(caught.value).count("\n") == 0, str(caught.value)  # the file is unusable: one line
    assert "(line 5)" in str(caught.value)  # the first alias


@pytest.mark.parametrize("variable", ["ENVLABEL_ENVIRONMENTS", "ENVLABEL_SYNONYMS", "ENVLABEL_API__TOKENS"])
def test_a_billion_laughs_variable_is_refused_naming_it(variable: str) -> None:
    with pytest.raises(ConfigError, match=ALIAS_A) as caught:
        load_config(environ={variable: BILLION_LAUGHS})
    assert caught.value.problems == [(variable, ALIAS_MESSAGE.format(name="a"))]


def test_the_cli_refuses_an_alias_bomb_in_the_environment_with_exit_2() -> None:
    result = invoke("validate", ENVLABEL_ENVIRONMENTS=BILLION_LAUGHS)
    assert result.exit_code == 2
    assert f"ENVLABEL_ENVIRONMENTS: {ALIAS_MESSAGE.format(name='a')}" in result.stderr


@pytest.mark.parametrize("document", [f"sources: {DEEP}", f"policy: {{production: {DEEP}}}",
                                      "a:\n" + "".join(f"{'  ' * i}- \n" for i in range(MAX_DEPTH + 5))])
def test_deep_nesting_is_refused_before_it_recurses(tmp_path: Path, document: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels deep"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=f"ENVLABEL_SOURCES: nested more than {MAX_DEPTH}"):
        load_config(environ={"ENVLABEL_SOURCES": DEEP})


def test_a_file_larger_than_the_bound_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"it is larger than 1 MiB; an envlabel config is a few KiB"):
        load_config(path, environ={})


def test_yaml_syntax_errors_are_one_line_with_the_place(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("store: sqlite:///x.db\nsources: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert re.fullmatch(rf"config file {re.escape(str(path))}: not valid YAML at line 3, column 1: .+",
                        str(caught.value)), str(caught.value)


def test_a_variable_that_is_not_utf8_is_named() -> None:
    raw = b"sqlite:///\xff.db".decode("utf-8", "surrogateescape")  # what os.environ holds for such bytes
    with pytest.raises(ConfigError, match="ENVLABEL_STORE: is not UTF-8 text"):
        load_config(environ={"ENVLABEL_STORE": raw})


def test_a_variable_inside_a_value_another_sets_is_a_conflict_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="ENVLABEL_SCHEDULE__INTERVAL: sets a key inside schedule, which "
                                          "ENVLABEL_SCHEDULE sets to a single value"):
        load_config(environ={"ENVLABEL_SCHEDULE": "5m", "ENVLABEL_SCHEDULE__INTERVAL": "5m"})


# -- files that cannot be a config: one line, exit 2, from every command -----------------------------
def unusable(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A config path that is not a usable file, and the words its error must say."""
    path = tmp_path / f"{kind}.yaml"
    if kind == "directory":
        path.mkdir()
        return path, "it is a directory"
    if kind == "binary":
        path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
        return path, "it is a binary file, not YAML text"
    if kind == "latin-1":
        path.write_bytes("store: sqlite:///données.db\n".encode("latin-1"))
        return path, "it is not UTF-8 text (byte 21 is 0xe9); save it as UTF-8"
    return path, "it does not exist"  # missing


KINDS = ["directory", "binary", "latin-1", "missing"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", [["validate"], ["get", "222222222222"], ["override", "list"]])
@pytest.mark.parametrize("given", ["--config", "ENVLABEL_CONFIG"])
def test_an_unusable_config_is_one_line_and_exit_2(tmp_path: Path, kind: str, command: list[str],
                                                   given: str) -> None:
    path, words = unusable(tmp_path, kind)
    if given == "--config":
        result = invoke(*command, "--config", str(path))
        origin = "--config"
    else:
        result = invoke(*command, ENVLABEL_CONFIG=str(path))
        origin = "$ENVLABEL_CONFIG"
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"envlabel: config file {path}: {words}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    if kind in ("directory", "binary", "missing"):
        assert origin in result.stderr


@pytest.mark.parametrize("kind", ["directory", "binary", "latin-1"])
def test_serve_with_an_unusable_config_exits_2_before_listening(tmp_path: Path, kind: str) -> None:
    path, words = unusable(tmp_path, kind)
    port = free_port()
    done = subprocess.run([ENVLABEL, "serve", "--port", str(port)], capture_output=True, text=True, timeout=60,
                          env=clean_environ(ENVLABEL_CONFIG=str(path)), cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"envlabel: config file {path}: {words}"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_config_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("stale_after: 2h\n")
    path.chmod(0)
    result = invoke("validate", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr == f"envlabel: config file {path}: it cannot be read (permission denied); give the user " \
                            "running envlabel read access\n"


# -- durations: bounded, with a message, never OverflowError ------------------------------------------
@pytest.mark.parametrize(("data", "field", "message"), [
    ({"stale_after": "99999999999d"}, "stale_after", "'99999999999d' is longer than 36500d"),
    ({"stale_after": float("inf")}, "stale_after", "is longer than 36500d"),
    ({"stale_after": float("nan")}, "stale_after", "is not a duration"),
    ({"stale_after": 10 ** 40}, "stale_after", "is longer than 36500d"),
    ({"stale_after": -5}, "stale_after", "is negative"),
    ({"stale_after": "0s"}, "stale_after", "0s is too short: at least 100ms"),
    ({"stale_after": "9" * 40 + "d"}, "stale_after", "is not a duration"),
    ({"schedule": {"interval": "0s"}}, "schedule.interval", "0s is too short: at least 10s (each scan lists"),
    ({"schedule": {"interval": "1s"}}, "schedule.interval", "1s is too short: at least 10s"),
    ({"sources": [{"name": "org", "type": "aws", "interval": "5s"}]}, "sources.0.interval", "at least 10s"),
    ({"lookup_timeout": "5m"}, "lookup_timeout", "5m is too long: at most 1m (a check waits for the lookup)"),
    ({"lookup_timeout": "10ms"}, "lookup_timeout", "10ms is too short: at least 100ms; 0s turns it off"),
    ({"leader_election": {"retry_period": "0s"}}, "leader_election.retry_period", "too short"),
])
def test_durations_are_range_checked(tmp_path: Path, data: dict[str, Any], field: str, message: str) -> None:
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert any(f == field and message in m for f, m in caught.value.problems), caught.value.problems


def test_an_overflowing_interval_from_the_environment_is_exit_2() -> None:
    result = invoke("validate", ENVLABEL_SCHEDULE__INTERVAL="99999999999d")
    assert result.exit_code == 2
    assert "schedule.interval: '99999999999d' is longer than 36500d" in result.stderr


def test_the_bounds_themselves_and_off_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump({"schedule": {"interval": "10s", "jitter": "0s"}, "lookup_timeout": "0s",
                                    "stale_after": "36500d", "sources": [{"name": "a", "type": "aws",
                                                                          "interval": "10s"}]}))
    config = load_config(path, environ={})
    assert (config.schedule.interval.total_seconds(), config.lookup_timeout.total_seconds()) == (10, 0)


# -- policy rows ---------------------------------------------------------------------------------------
def test_a_policy_row_that_leaves_classes_out_is_named(tmp_path: Path) -> None:
    path = tmp_path / "envlabel.yaml"
    path.write_text("policy: {staging: {read: allow}}\n")
    result = invoke("validate", "--config", str(path))
    assert result.exit_code == 2
    assert "  policy.staging: no decision for create, modify, delete (every class needs" in result.stderr


def test_default_rows_are_still_whole_when_a_row_is_added(tmp_path: Path) -> None:
    path = tmp_path / "envlabel.yaml"
    row = {"read": "allow", "create": "deny", "modify": "deny", "delete": "deny"}
    path.write_text(yaml.safe_dump({"environments": ["production", "dr", "staging", "sandbox"],
                                    "policy": {"dr": row}}))
    policy = load_config(path, environ={}).policy
    assert policy == {**DEFAULT_POLICY, "dr": row}


# -- tokens --------------------------------------------------------------------------------------------
def token_config(tmp_path: Path, tokens: list[dict[str, str]]) -> Path:
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "api": {"tokens": tokens}}))
    return path


def test_the_hash_of_an_unset_token_is_refused_by_name(tmp_path: Path) -> None:
    unset = subprocess.run(["sh", "-c", 'printf %s "$TOKEN" | sha256sum'], capture_output=True, text=True,
                           env=clean_environ(), check=True).stdout.split()[0]  # the old README recipe, unset
    assert unset == EMPTY_SHA256
    path = token_config(tmp_path, [{"name": "ops", "role": "admin", "sha256": unset}])
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == [("api.tokens.0.sha256", f"{EMPTY_SHA256} is the SHA-256 of the empty string: "
                                      "$TOKEN was probably unset when you hashed it; create a token with "
                                      "`envlabel token create`")]
    with pytest.raises(ConfigError, match="64 lowercase hex digits"):
        load_config(token_config(tmp_path, [{"name": "ops", "role": "admin", "sha256": unset.upper()}]), environ={})


def test_serve_with_the_empty_token_never_listens_and_production_stays(tmp_path: Path) -> None:
    """The attack: the README recipe run with TOKEN unset, then ``Authorization: Bearer`` with nothing after
    it, marking the production database sandbox. The daemon refuses the config; nothing answers the request."""
    path = token_config(tmp_path, [{"name": "ops", "role": "admin", "sha256": EMPTY_SHA256}])
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    populate(store)
    store.close()
    port = free_port()
    done = subprocess.run([ENVLABEL, "serve", "--config", str(path), "--port", str(port)], capture_output=True,
                          text=True, timeout=60, env=clean_environ(), cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert "is the SHA-256 of the empty string" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/v1/overrides", headers={"authorization": "Bearer "},
                   json={"target": PROD_DB, "environment": "sandbox", "reason": "x"})
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    try:
        stored = store.get(PROD_DB)
        assert stored is not None and stored.tombstoned_at is None
        assert store.overrides() == {}
    finally:
        store.close()


def test_token_create_prints_a_token_the_server_accepts(tmp_path: Path) -> None:
    text = invoke("token", "create", "--name", "ci deploy", "--role", "admin")
    assert text.exit_code == 0, text.stderr
    token = text.stdout.splitlines()[1].strip()
    entry_yaml = text.stdout.split("in the config (it holds the token's SHA-256, not the token):\n", 1)[1]
    entry = yaml.safe_load(entry_yaml)
    assert entry == [{"name": "ci deploy", "role": "admin", "sha256": hashlib.sha256(token.encode()).hexdigest()}]
    assert len(token) >= MIN_TOKEN_LENGTH and token not in entry_yaml

    as_json = json.loads(invoke("token", "create", "--name", "agents", "--role", "reader", "--json").stdout)
    assert set(as_json) == {"name", "role", "token", "sha256"} and as_json["token"] != token
    config = load_config(token_config(tmp_path, [*entry, {k: as_json[k] for k in ("name", "role", "sha256")}]),
                         environ={})
    store = open_store(config.store)
    populate(store)
    with BackgroundServer(config, store) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v1/overrides").status_code == 401
        reader = {"authorization": f"Bearer {as_json['token']}"}
        assert client.get("/v1/overrides", headers=reader).status_code == 200
        admin = {"authorization": f"Bearer {token}"}
        assert client.get("/v1/overrides", headers=admin).status_code == 200
    store.close()


def test_token_create_needs_a_visible_name() -> None:
    result = invoke("token", "create", "--name", "\u200b", "--role", "reader")
    assert result.exit_code == 2 and "--name needs visible characters" in result.stderr

