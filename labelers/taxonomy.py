"""The environment vocabulary: which keys are environment tags, which values mean what.

>>> t = Taxonomy()
>>> t.normalize("Prod-EU")
Match(environment='production', canonical=False)
>>> t.normalize("non-prod")
Match(environment=None, canonical=False)
>>> t.is_environment_key("Environment"), t.is_environment_key("environment-owner")
(True, False)
>>> sorted(t.name_environments("orders-prod-db"))
['production']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envlabel.config import DEFAULT_ENVIRONMENTS, DEFAULT_SYNONYMS, DEFAULT_TAG_KEYS, Config
from envlabel.model import UNKNOWN

_TOKEN_SPLIT = re.compile(r"[-_./\s]+")


@dataclass(frozen=True, slots=True)
class Match:
    environment: str | None
    canonical: bool


def tokens(text: str) -> list[str]:
    """Split on - _ . / and white space, lower-cased, empties dropped."""
    return [t for t in _TOKEN_SPLIT.split(text.lower()) if t]


class Taxonomy:
    """Environments in restrictiveness order (most restrictive first), tag keys and synonyms."""

    def __init__(
        self,
        environments: Sequence[str] = DEFAULT_ENVIRONMENTS,
        tag_keys: Iterable[str] = DEFAULT_TAG_KEYS,
        synonyms: Mapping[str, Iterable[str]] | None = None,
        name_tokens: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.environments: tuple[str, ...] = tuple(environments)
        self._rank = {env: i for i, env in enumerate(self.environments)}
        self._rank[UNKNOWN] = len(self.environments)
        self._keys = frozenset(k.lower() for k in tag_keys)
        if synonyms is None:
            synonyms = {e: w for e, w in DEFAULT_SYNONYMS.items() if e in self._rank}
        self._synonyms: dict[str, str] = {env.lower(): env for env in self.environments}
        for env, words in synonyms.items():
            self._synonyms.update({w.lower(): env for w in words})
        self._name_words = dict(self._synonyms)
        for env, words in (name_tokens or {}).items():
            self._name_words.update({w.lower(): env for w in words})
        self._cache: dict[str, Match] = {}
        self._name_cache: dict[str, frozenset[str]] = {}

    @classmethod
    def from_config(cls, config: Config) -> Taxonomy:
        return cls(config.environments, config.tag_keys, config.synonyms, config.name_tokens)

    def rank(self, environment: str) -> int:
        """0 for the most restrictive environment; ``unknown`` ranks after all."""
        return self._rank.get(environment, len(self.environments))

    def most_restrictive(self, environments: Iterable[str]) -> str:
        return min(environments, key=self.rank, default=UNKNOWN)

    def is_environment_key(self, key: str) -> bool:
        return key.lower() in self._keys

    def normalize(self, value: str) -> Match:
        """The environment a tag value means: the whole value or its first token is a synonym."""
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        lowered = value.strip().lower()
        env = self._synonyms.get(lowered)
        if env is None:
            parts = tokens(lowered)
            env = self._synonyms.get(parts[0]) if parts else None
        match = Match(env, env is not None and value.lower() == env.lower())
        if len(self._cache) < 100_000:
            self._cache[value] = match
        return match

    def environment_tags(self, tags: Mapping[str, str]) -> list[tuple[str, str, Match]]:
        """Every (key, value, match) of ``tags`` whose key is an environment key."""
        return [(k, v, self.normalize(v)) for k, v in tags.items() if k.lower() in self._keys]

    def name_words(self) -> frozenset[str]:
        """Every word that names an environment in a resource's name: environment names, synonyms and
        ``name_tokens`` (what a lookalike's stem strips, labelers/stems.py)."""
        return frozenset(self._name_words)

    def name_environments(self, name: str) -> set[str]:
        """Environments that tokens of ``name`` suggest (evidence only, never decides)."""
        cached = self._name_cache.get(name)
        if cached is None:  # names repeat across an estate (twins, regions, defaults): tokenize each once
            cached = frozenset(self._name_words[t] for t in tokens(name) if t in self._name_words)
            if len(self._name_cache) < 100_000:
                self._name_cache[name] = cached
        return set(cached)
