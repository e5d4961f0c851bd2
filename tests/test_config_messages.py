"""Config errors in plain words (issue 18, item 8): what was expected in the user's terms, the place of the
mistake (the key in the file, or the ENVLABEL_* variable that set it), every problem in one run, and
``envlabel validate`` refusing what ``envlabel serve`` would refuse at start.

Files are written as YAML text (not dumped from Python) where YAML's own reading is the point: an unquoted
account id is a number to YAML before envlabel sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from envlabel.config import SOURCE_TYPES, load_config
from envlabel.errors import ConfigError
from envlabel.service.cli import main
from tests.conftest import free_port

ENVLABEL = str(Path(sys.executable).parent / "envlabel")


@pytest.fixture(autouse=True)
def _no_stray_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./envlabel.yaml and no ENVLABEL_ variable of the caller's shell takes part."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ENVLABEL_")]:
        monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "envlabel.yaml"
    path.write_text(f"store: sqlite:///{tmp_path / 'envlabel.db'}\n{text}")
    return path


def problems_of(path: Path | None, **environ: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    return caught.value.problems


def validate(path: Path, **env: str) -> Result:
    return CliRunner().invoke(main, ["validate", "--config", str(path)], env=env or None, catch_exceptions=False)


# -- wrong types: what was expected, in the user's words ------------------------------------------------
@pytest.mark.parametrize(("text", "field", "message"), [
    ("tag_keys: {environment: 1}\n", "tag_keys", "expected a list of strings, got a mapping"),
    ("tag_keys: env\n", "tag_keys", "expected a list of strings, got the string 'env'; write a list: [env]"),
    ("synonyms: {production: prod}\n", "synonyms.production", "expected a list of strings, got the string 'prod'"),
    ("schedule: 5m\n", "schedule", "expected a mapping of keys such as interval, jitter, got the string '5m'"),
    ("store_pool_size: many\n", "store_pool_size", "expected a whole number, got the string 'many'"),
    ("api: {max_batch: [1]}\n", "api.max_batch", "expected a whole number, got a list"),
    ("mode: bogus\n", "mode", "expected 'enforce' or 'audit', got the string 'bogus'"),
    ("synonyms: {sandbox: [sbx, on]}\n", "synonyms.sandbox.1",
     "expected a string, got true; YAML reads yes, no, on, off, true and false unquoted as true/false: quote it"),
    ("sources: [{name: c, type: kubernetes, parent: 123456789012}]\n", "sources.0.parent",
     "expected a string, got the number 123456789012; YAML reads unquoted digits as a number: quote it "
     "('123456789012')"),
    ("sources: [{name: a, type: aws, regions: us-east-1}]\n", "sources.0.regions",
     "expected a list of strings, got the string 'us-east-1'"),
])
def test_a_wrong_type_says_what_was_expected_and_what_was_written(tmp_path: Path, text: str, field: str,
                                                                   message: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert any(f == field and m.startswith(message) for f, m in problems), problems
    assert not any("Input should" in m for _, m in problems), problems


# -- the source type: at sources.N.type, with the types there are ----------------------------------------
def test_an_unknown_source_type_points_at_its_type_key_and_lists_the_types(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - {name: a, type: aws}\n  - {name: b, type: gcp, organization: '1'}\n"
                           "  - {name: c, type: azure}\n")
    assert problems_of(path) == [("sources.2.type", "'azure' is not a source type; use one of aws, kubernetes, gcp")]
    assert SOURCE_TYPES == ("aws", "kubernetes", "gcp")
    result = validate(path)
    assert result.exit_code == 2
    assert "  sources.2.type: 'azure' is not a source type; use one of aws, kubernetes, gcp" in result.stderr
    assert "discriminator" not in result.stderr and "tag" not in result.stderr


def test_a_source_without_a_type_is_told_to_give_one(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "sources: [{name: a}]\n")) == [
        ("sources.0.type", "missing: every source needs a type, one of aws, kubernetes, gcp")]
    assert problems_of(write(tmp_path, "sources: [aws]\n")) == [
        ("sources.0", "expected a source (a mapping with a type: aws, kubernetes, gcp), got the string 'aws'")]


# -- account ids YAML read as numbers ----------------------------------------------------------------------
def test_an_unquoted_account_id_is_told_to_be_quoted(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - name: org\n    type: aws\n    account_environments:\n"
                           "      123456789012: production\n      '210987654321': staging\n")
    assert problems_of(path) == [("sources.0.account_environments.123456789012",
                                  "YAML read this account id as a number; quote it: '123456789012' "
                                  "(an account id is text)")]
    quoted = write(tmp_path, "sources:\n  - name: org\n    type: aws\n    account_environments:\n"
                             "      '123456789012': production\n")
    assert load_config(quoted, environ={}).sources[0].account_environments == {"123456789012": "production"}


def test_a_leading_zero_account_id_read_as_octal_says_digits_were_lost(tmp_path: Path) -> None:
    # 012345670123: a leading 0 and digits 0-7 only: YAML 1.1 reads the number 1402433619 (octal)
    path = write(tmp_path, "sources:\n  - name: org\n    type: aws\n    account_environments:\n"
                           "      012345670123: production\n")
    [(field, message)] = problems_of(path)
    assert field == "sources.0.account_environments.1402433619"
    assert "YAML read this key as the number 1402433619, not a 12-digit account id" in message
    assert "octal number and loses digits; quote it: '012345670123'" in message
    # with an 8 or 9 in it, YAML keeps it as text: accepted as it is
    kept = write(tmp_path, "sources:\n  - name: org\n    type: aws\n    account_environments:\n"
                           "      012345678901: production\n")
    assert load_config(kept, environ={}).sources[0].account_environments == {"012345678901": "production"}


def test_an_account_id_of_the_wrong_length_says_what_an_account_id_is(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: [{name: org, type: aws, account_environments: {'2222': production}}]\n")
    assert problems_of(path) == [("sources.0.account_environments.2222", "this key is invalid: '2222' is not an "
                                  "AWS account id: write its 12 digits, quoted ('123456789012')")]


# -- ENVLABEL_* variables: the variable is named, not the file ---------------------------------------------
def test_a_bad_variable_names_the_variable_and_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mode: enforce\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"ENVLABEL_MODE": "bogus"})
    assert caught.value.problems == [("ENVLABEL_MODE", "mode: expected 'enforce' or 'audit', got the string "
                                      "'bogus'")]
    assert str(path) not in str(caught.value)  # the file holds no mistake
    result = validate(path, ENVLABEL_MODE="bogus")
    assert result.exit_code == 2
    assert result.stderr == "envlabel: invalid configuration:\n  ENVLABEL_MODE: mode: expected 'enforce' or " \
                            "'audit', got the string 'bogus'\n"


def test_file_and_variable_mistakes_are_each_named_by_where_they_are(tmp_path: Path) -> None:
    path = write(tmp_path, "stale_after: a day\nschedule: {jitter: soon}\n")
    problems = problems_of(path, ENVLABEL_SCHEDULE__INTERVAL="1s",
                           ENVLABEL_SOURCES="[{name: a, type: aws}, {name: b, type: azure}]")
    assert ("stale_after", "'a day' is not a duration; write it as 30s, 15m, 2h or 7d") in problems
    assert ("schedule.jitter", "'soon' is not a duration; write it as 30s, 15m, 2h or 7d") in problems
    assert any(f == "ENVLABEL_SCHEDULE__INTERVAL" and m.startswith("schedule.interval: 1s is too short")
               for f, m in problems), problems
    assert ("ENVLABEL_SOURCES", "sources.1.type: 'azure' is not a source type; use one of aws, kubernetes, "
            "gcp") in problems
    with pytest.raises(ConfigError, match=f"invalid configuration in {path}"):  # the file is in it too
        load_config(path, environ={"ENVLABEL_SCHEDULE__INTERVAL": "1s"})


def test_a_cross_field_problem_a_variable_takes_part_in_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "leader_election: {renew_deadline: 10s}\n")
    problems = problems_of(path, ENVLABEL_LEADER_ELECTION__RETRY_PERIOD="20s")
    assert problems == [("leader_election", "retry_period < renew_deadline < lease_duration must hold, so a leader "
                         "steps down before a follower takes over (ENVLABEL_LEADER_ELECTION__RETRY_PERIOD sets "
                         "leader_election.retry_period)")]
    assert problems_of(None, ENVLABEL_ENVIRONMENTS="[production, production]") == [
        ("ENVLABEL_ENVIRONMENTS", "environments: listed twice in ['production', 'production']")]


# -- cross-field checks run with the field checks -----------------------------------------------------------
def test_cross_field_problems_are_reported_with_field_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "environments: [production, staging, production]\nstale_after: a day\n"
                           "policy: {staging: {read: allow}}\n"
                           "sources: [{name: org, type: aws}, {name: org, type: aws}]\nschedule: 5m\n")
    problems = problems_of(path)
    fields = [f for f, _ in problems]
    assert set(fields) == {"stale_after", "schedule", "environments", "policy.staging", "sources"}, problems
    assert ("environments", "listed twice in ['production', 'staging', 'production']") in problems
    assert ("sources", "name 'org' used twice") in problems
    assert any(f == "policy.staging" and m.startswith("no decision for create, modify, delete") for f, m in problems)


def test_a_cross_field_check_on_an_invalid_field_is_not_run_on_defaults(tmp_path: Path) -> None:
    """environments is wrong: checks that read it would compare against the default environments and
    report policy.dr as unknown when dr is meant to be one; only the field problem is said."""
    path = write(tmp_path, "environments: {production: 1, dr: 2}\npolicy: {dr: {read: allow, create: deny, "
                           "modify: deny, delete: deny}}\n")
    assert problems_of(path) == [("environments", "expected a list of strings, got a mapping; write one item per "
                                  "line, each after '- ', or [a, b]")]


# -- validate refuses what serve refuses at start ------------------------------------------------------------
def test_validate_refuses_a_webhook_whose_secret_variable_is_unset(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    path = write(tmp_path, "webhooks: [{url: 'https://hooks.example.com/', secret_env: HOOK_SECRET}]\n")
    refused = validate(path)
    assert refused.exit_code == 2 and refused.stdout == ""
    assert "webhooks.0.secret_env: the environment variable HOOK_SECRET is not set" in refused.stderr
    accepted = validate(path, HOOK_SECRET="s3cret")
    assert accepted.exit_code == 0, accepted.stderr
    assert accepted.stdout.startswith("configuration ok")


@pytest.mark.parametrize(("text", "field", "message"), [
    ("leader_election: {kind: advisory_lock}\n", "leader_election.kind",
     "advisory_lock needs a postgresql:// store; use lease, or none for a single replica"),
    ("environments: [prod, staging]\npolicy: {prod: {read: allow, create: deny, modify: deny, delete: deny}}\n"
     "export: {directory: out}\n", "export.environments",
     "production is not one of the configured environments (prod, staging); fix export.environments"),
])
def test_validate_refuses_what_serve_refuses(tmp_path: Path, text: str, field: str, message: str) -> None:
    result = validate(write(tmp_path, text))
    assert result.exit_code == 2, result.stdout
    assert f"  {field}: {message}" in result.stderr


@pytest.mark.parametrize(("store", "message"), [
    ("sqlite://", "'sqlite://' names no file; write sqlite:////abs/path.db or sqlite:///rel.db"),
    ("postgresql://envlabel:hunter2@db.example.com:5432/", "'postgresql://envlabel:***@db.example.com:5432/' "
                                                           "names no database; write postgresql://USER@HOST:PORT/DB"),
])
def test_a_store_url_the_store_cannot_open_is_a_config_problem(tmp_path: Path, store: str, message: str) -> None:
    path = tmp_path / "envlabel.yaml"
    path.write_text(f"store: '{store}'\n")
    assert problems_of(path) == [("store", message)]
    assert "hunter2" not in validate(path).stderr


def test_a_default_export_section_does_not_need_a_production_environment(tmp_path: Path) -> None:
    """The export's default environments (production) are only checked once the export is used."""
    path = write(tmp_path, "environments: [prod, staging]\n"
                           "policy: {prod: {read: allow, create: deny, modify: deny, delete: deny}}\n")
    assert validate(path).exit_code == 0


def test_serve_refuses_what_validate_refuses_before_listening(tmp_path: Path) -> None:
    """The same config through the real daemon: exit 2 with the same line, and nothing listens."""
    path = write(tmp_path, "leader_election: {kind: advisory_lock}\nsources: [{name: c, type: azure}]\n")
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")}
    done = subprocess.run([ENVLABEL, "serve", "--config", str(path), "--port", str(port)], capture_output=True,
                          text=True, timeout=60, env=environ, cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert "  sources.0.type: 'azure' is not a source type; use one of aws, kubernetes, gcp" in done.stderr
    assert "  leader_election.kind: advisory_lock needs a postgresql:// store" in done.stderr
    assert validate(path).stderr == done.stderr
