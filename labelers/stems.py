"""Lookalike stems: a resource's name with its environment words stripped, so twins share one.

``orders-db``, ``orders-prod-db`` and ``orders-stg-db`` are the same database in three environments, the
mistake an agent (or a distracted approver) makes. The store keeps each resource's stem in an indexed column
and a check lists the same-kind resources with the target's stem that are labeled in another environment.

>>> words = Taxonomy().name_words()
>>> [stem(n, words) for n in ("orders-db", "orders-prod-db", "Orders_STG.db", "orders-pre-prod-db", "prod")]
['orders-db', 'orders-db', 'orders-db', 'orders-db', '']
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field

from envlabel.labelers.taxonomy import Taxonomy, tokens

#: bumped when :func:`stem` itself changes, so stores re-stem although the taxonomy's words did not change
STEM_VERSION = "1"


def stem(name: str, words: Collection[str]) -> str:
    """``name`` lower-cased, split on - _ . / and white space, without the tokens in ``words``, joined with -.

    A word of several tokens (``pre-prod``) is stripped where its tokens stand together. Empty when nothing is
    left (a resource called ``prod``): such a name has no lookalikes."""
    return Stemmer.of_words(frozenset(w.lower() for w in words))(name)


def fingerprint(words: Collection[str]) -> str:
    """What the stored stems were computed from: the stem version and the stripped words (order ignored).
    A store whose fingerprint differs re-stems every resource (:meth:`envlabel.store.sql.Store.ensure_stems`)."""
    text = "\n".join(sorted(words))
    return f"v{STEM_VERSION}:{hashlib.sha256(text.encode()).hexdigest()}"


#: names remembered per stemmer (names repeat across an estate: twins, regions, defaults); cleared when full
MEMO_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class Stemmer:
    """The stem function of one taxonomy, with its fingerprint: what the store is handed to write stems."""

    words: frozenset[str]
    fingerprint: str
    #: the words of one token (most), and of several, longest first (``pre-prod`` as ("pre", "prod"))
    singles: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]
    #: the first tokens of ``phrases``: a name with none of them holds no phrase
    heads: frozenset[str] = frozenset()
    #: name -> stem, of the names seen so far (a scan stems a million, and many repeat)
    memo: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> Stemmer:
        return cls.of_words(taxonomy.name_words())

    @classmethod
    def of_words(cls, words: frozenset[str]) -> Stemmer:
        split = [tuple(tokens(w)) for w in words]
        phrases = sorted({p for p in split if len(p) > 1}, key=len, reverse=True)
        return cls(words, fingerprint(words), frozenset(p[0] for p in split if len(p) == 1), tuple(phrases),
                   frozenset(p[0] for p in phrases))

    def __call__(self, name: str) -> str:
        memo = self.memo
        done = memo.get(name)
        if done is not None:
            return done
        parts = tokens(name)
        if not self.heads.isdisjoint(parts):
            parts = self._without_phrases(parts)
        singles = self.singles
        done = "-".join(parts if singles.isdisjoint(parts) else [t for t in parts if t not in singles])
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[name] = done
        return done

    def _without_phrases(self, parts: list[str]) -> list[str]:
        kept: list[str] = []
        i = 0
        heads = self.heads
        while i < len(parts):
            phrase = next((p for p in self.phrases if tuple(parts[i:i + len(p)]) == p), None) \
                if parts[i] in heads else None
            if phrase is None:
                kept.append(parts[i])
                i += 1
            else:
                i += len(phrase)
        return kept
