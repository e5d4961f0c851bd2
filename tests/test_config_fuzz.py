"""The config loader on generated input: whatever the file and the ``ENVLABEL_*`` variables hold, loading
ends in a Config or a ConfigError, never another exception.

Three shapes of input: documents built from the real schema's keys and plausible values (then mutated),
raw YAML text with the constructs PyYAML knows (anchors, aliases, tags, merge keys, flow and block nesting),
and variables naming real keys with generated values. Example counts are bounded; each example writes one
file under a temporary directory and loads it with ``load_config``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envlabel.config import (
    ApiToken,
    AwsSource,
    Config,
    GcpSource,
    KubernetesResource,
    KubernetesSource,
    LeaderElection,
    Schedule,
    Webhook,
    load_config,
)
from envlabel.errors import ConfigError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = (Config, Schedule, ApiToken, Webhook, AwsSource, KubernetesSource, KubernetesResource, GcpSource,
          LeaderElection)
#: every key the schema knows, and words its values use
SCHEMA_KEYS = sorted({name for model in MODELS for name in model.model_fields} | {"max_body_bytes", "max_batch"})
WORDS = ["production", "staging", "sandbox", "dr", "unknown", "prod", "read", "create", "modify", "delete",
         "allow", "deny", "require_approval", "aws", "gcp", "kubernetes", "reader", "admin", "auto", "lease",
         "advisory_lock", "none", "environment_changed", "finding"]
SCALAR_TEXT = ["15m", "0s", "1s", "10s", "200ms", "7d", "36500d", "36501d", "99999999999d", "9" * 40 + "d", "-5m",
               "sqlite:///x.db", "postgresql://u:p@h/db", "mysql://x", "https://hooks.example.com/", "http://",
               "organizations/123", "123456789012", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
               "a" * 64, "", " ", "\u200b", "~", "null", "yes", "on", "2026-01-31", "{", "[", "*a", "&a"]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def load_or_refuse(path: Path | None, environ: dict[str, str]) -> None:
    """Load; a ConfigError is an answer (and must format), anything else fails the example."""
    try:
        load_config(path, environ=environ)
    except ConfigError as exc:
        assert str(exc) and exc.problems, exc
        assert all(isinstance(f, str) and isinstance(m, str) for f, m in exc.problems), exc.problems


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SCALAR_TEXT), st.sampled_from(WORDS),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(SCHEMA_KEYS), st.sampled_from(WORDS), st.text(max_size=10), st.integers(0, 3))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)

#: a valid document touching every section, the starting point for mutations
VALID: dict[str, Any] = {
    "store": "sqlite:///x.db", "store_pool_size": 5, "environments": ["production", "dr", "staging", "sandbox"],
    "tag_keys": ["environment", "env"], "synonyms": {"dr": ["dr", "failover"]}, "name_tokens": {"dr": ["recovery"]},
    "stale_after": "24h", "lookup_timeout": "2s", "schedule": {"interval": "15m", "jitter": "30s"},
    "policy": {"dr": {"read": "allow", "create": "deny", "modify": "deny", "delete": "deny"}},
    "approvers": {"production": ["sre"]},
    "api": {"tokens": [{"name": "ops", "role": "admin", "sha256": "a" * 64}], "max_batch": 10},
    "webhooks": [{"url": "https://hooks.example.com/", "events": ["finding"]}],
    "leader_election": {"kind": "auto", "retry_period": "2s"},
    "sources": [{"name": "org", "type": "aws", "regions": ["us-east-1"], "interval": "1h",
                 "account_environments": {"123456789012": "dr"}},
                {"name": "c1", "type": "kubernetes", "environment": "production",
                 "resources": [{"resource": "deployments", "group": "apps"}]},
                {"name": "g", "type": "gcp", "organization": "organizations/1"}],
}


durations = st.one_of(
    st.sampled_from(["0s", "10s", "15m", "36500d", "36501d", "99999999999d", "9" * 40 + "d", "1.5h", "-1s"]),
    st.from_regex(r"\A ?\d{1,16} ?(ms|s|m|h|d) ?\Z"), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), values)


@st.composite
def timed(draw: st.DrawFn) -> dict[str, Any]:
    """A document whose durations (every one the schema has) are generated: the overflow and range paths."""
    return {"stale_after": draw(durations), "lookup_timeout": draw(durations),
            "schedule": {"interval": draw(durations), "jitter": draw(durations)},
            "leader_election": {k: draw(durations) for k in ("lease_duration", "renew_deadline", "retry_period")
                                if draw(st.booleans())},
            "api": {"read_timeout": draw(durations)} if draw(st.booleans()) else {},
            "sources": [{"name": "org", "type": "aws", "interval": draw(durations)}]}


class _NoAliases(yaml.SafeDumper):
    """Write every value out, even one object met twice (the loader refuses aliases; that is tested apart)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_NoAliases, allow_unicode=True)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """VALID with a few values replaced, removed or added, at any depth."""
    document = yaml.safe_load(dump(VALID))
    for _ in range(draw(st.integers(1, 4))):
        node = document
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, dict):
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "add" or not node:
                node[draw(keys)] = draw(values)
            else:
                key = draw(st.sampled_from(list(node)))
                if action == "remove":
                    del node[key]
                else:
                    node[key] = draw(values)
        elif isinstance(node, list):
            replace = draw(st.booleans())
            if node and replace:
                node[draw(st.integers(0, len(node) - 1))] = draw(values)
            else:
                node.append(draw(values))
    return document


@FUZZ
@given(document=st.one_of(mutated(), timed(), st.dictionaries(keys, values, max_size=8), values))
def test_generated_documents_load_or_fail_with_a_config_error(workdir: Path, document: Any) -> None:
    path = workdir / "envlabel.yaml"
    path.write_text(dump(document), encoding="utf-8")
    load_or_refuse(path, {})


#: snippets of YAML syntax, joined at random into a document
SNIPPETS = ["store: sqlite:///x.db\n", "environments: [production, staging]\n", "a: &a [x, y]\n", "b: *a\n",
            "<<: *a\n", "c: !!binary aGVsbG8=\n", "d: !!python/object:os.system ls\n", "e: !!set {a, b}\n",
            "f: !!timestamp 2026-01-01\n", "g: !!float .inf\n", "policy:\n  production:\n    read: allow\n",
            "? [complex, key]\n: v\n", "- item\n", "---\n", "...\n", "%YAML 1.1\n", "'unclosed\n", "{[}]\n",
            "schedule: {interval: 1e400}\n", "stale_after: !!int 99999999999999999999999\n", "\t tab\n",
            "sources:\n  - {name: x, type: aws, interval: 0s}\n", "api: {tokens: [&t {name: a}, *t]}\n",
            "key: |\n  block\n  text\n", "x: >-\n  folded\n", "\ufeff", "#comment\n", "[" * 40, "]" * 40]


@FUZZ
@given(parts=st.lists(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=30)), max_size=8))
def test_raw_yaml_text_loads_or_fails_with_a_config_error(workdir: Path, parts: list[str]) -> None:
    path = workdir / "envlabel.yaml"
    path.write_text("".join(parts), encoding="utf-8")
    load_or_refuse(path, {})


#: variables naming real keys, nested ones, and the SDK's own
VARIABLES = [f"ENVLABEL_{k.upper()}" for k in Config.model_fields] + [
    "ENVLABEL_SCHEDULE__INTERVAL", "ENVLABEL_SCHEDULE__JITTER", "ENVLABEL_API__TOKENS", "ENVLABEL_API__MAX_BATCH",
    "ENVLABEL_LEADER_ELECTION__KIND", "ENVLABEL_POLICY__PRODUCTION__DELETE", "ENVLABEL_SOURCES__0__NAME",
    "ENVLABEL_SCHEDULE__INTERVAL__X", "ENVLABEL_SCHEDULE__", "ENVLABEL_URL", "ENVLABEL_TOKEN", "ENVLABEL_STALE_AFTR"]
env_values = st.one_of(st.sampled_from(SNIPPETS + SCALAR_TEXT), values.map(dump),
                       st.text(max_size=30)).map(lambda v: v.replace("\x00", ""))


@FUZZ
@given(document=st.one_of(st.just(VALID), mutated()),
       environ=st.dictionaries(st.sampled_from(VARIABLES), env_values, max_size=5))
def test_environment_variables_load_or_fail_with_a_config_error(workdir: Path, document: Any,
                                                                environ: dict[str, str]) -> None:
    path = workdir / "envlabel.yaml"
    path.write_text(dump(document), encoding="utf-8")
    load_or_refuse(path, environ)
