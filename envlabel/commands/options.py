"""Read an argv the way Go's pflag reads it (kubectl, helm), and the one error every reader of this package raises
for what it cannot understand.

    spec = FlagSpec(values={"namespace"}, bools={"all"}, shorts={"n": "namespace"})
    parse(["delete", "pods", "-npayments", "--all", "x"], spec).positionals   # ['delete', 'pods', 'x']

pflag's rules: ``--name=value`` always; ``--name value`` for a flag that takes a value; a bool flag never takes
the next word (``--all=false`` to turn it off); a flag with a default for its value (NoOptDefVal: ``--dry-run``,
``--cascade``) takes one only after ``=``; short flags combine (``-it``) and a value may be attached (``-nfoo``,
``-n=foo``); ``--`` ends the flags. A flag not in the spec is ambiguous: it may take the next word or not, so the
reader cannot tell names from values and says so (:attr:`Parsed.ambiguous`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field


class CannotRead(Exception):
    """What a reader could not understand, worded for the person who reads the decision: what and how to fix it.
    The reader turns it into an :class:`envlabel.commands.Unparsed`, which is decided fail closed; ``scope``: the
    cluster, namespace or project it would act in ("" none known; None: the reader's usual scope)."""

    def __init__(self, reason: str, scope: str | None = None) -> None:
        super().__init__(reason)
        self.scope = scope


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """The flags of one program: long names (without ``--``) by how they take values, and short letters."""

    values: Collection[str] = frozenset()
    bools: Collection[str] = frozenset()
    #: NoOptDefVal flags: a value only after ``=``
    optional: Collection[str] = frozenset()
    shorts: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Parsed:
    #: long name -> every value given, in order ("true" for a bare bool)
    flags: dict[str, list[str]] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)
    #: the words after ``--``
    rest: list[str] = field(default_factory=list)
    #: (flag as written, how many positionals came before it) for every flag the spec does not know
    ambiguous: list[tuple[str, int]] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        """The last value given for ``name`` (pflag keeps the last), or None."""
        given = self.flags.get(name)
        return given[-1] if given else None

    def values(self, name: str) -> list[str]:
        return self.flags.get(name, [])

    def flag(self, name: str) -> bool:
        """True when the bool flag ``name`` is set (``--all``, ``--all=true``)."""
        value = self.value(name)
        return value is not None and value.lower() not in ("false", "0", "f")


def parse(argv: Sequence[str], spec: FlagSpec) -> Parsed:
    """Split ``argv`` (without the program) into flags and positionals by pflag's rules."""
    parsed = Parsed()
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            parsed.rest = words[i:]
            break
        if word.startswith("--") and len(word) > 2:
            i = _long(word[2:], words, i, spec, parsed)
        elif word.startswith("-") and len(word) > 1:
            i = _shorts(word, words, i, spec, parsed)
        else:
            parsed.positionals.append(word)
    return parsed


def _long(text: str, words: list[str], i: int, spec: FlagSpec, parsed: Parsed) -> int:
    name, eq, value = text.partition("=")
    if eq:
        parsed.flags.setdefault(name, []).append(value)
    elif name in spec.values:
        if i >= len(words):  # pflag: "flag needs an argument"; the program would stop here
            parsed.ambiguous.append((f"--{name}", len(parsed.positionals)))
            return i
        parsed.flags.setdefault(name, []).append(words[i])
        return i + 1
    else:
        if name not in spec.bools and name not in spec.optional:
            parsed.ambiguous.append((f"--{name}", len(parsed.positionals)))
        parsed.flags.setdefault(name, []).append("true")
    return i


def _shorts(word: str, words: list[str], i: int, spec: FlagSpec, parsed: Parsed) -> int:
    letters = word[1:]
    for at, letter in enumerate(letters):
        name = spec.shorts.get(letter)
        if name is None:
            parsed.ambiguous.append((f"-{letter}", len(parsed.positionals)))
            return i
        if name in spec.values:
            attached = letters[at + 1:]
            if attached:
                parsed.flags.setdefault(name, []).append(attached.removeprefix("="))
                return i
            if i >= len(words):
                parsed.ambiguous.append((f"-{letter}", len(parsed.positionals)))
                return i
            parsed.flags.setdefault(name, []).append(words[i])
            return i + 1
        rest = letters[at + 1:]
        if rest.startswith("="):  # -A=false
            parsed.flags.setdefault(name, []).append(rest[1:])
            return i
        parsed.flags.setdefault(name, []).append("true")
    return i
